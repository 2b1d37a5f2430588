"""The fleet: coordinators, agents and camera placement on NATS JetStream."""
