"""What every stage shares: params loading and validation, dataset paths, the stage entry point, output writers."""
