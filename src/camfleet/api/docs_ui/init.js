// Swagger UI for /api/docs, from files this server ships (no CDN); the schema is read with the
// page's cookie (camfleet_token), like every other read of the web UI.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null, // the default asks validator.swagger.io: nothing leaves this server
  });
});
