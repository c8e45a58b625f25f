"""Feature encoders shared by the outcome models."""
