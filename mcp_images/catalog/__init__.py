"""What the upstream accepts, as data: models, the parameter declaration, providers."""
