"""Modal: the seam around the modal SDK, deploying the bundled vLLM app, the original package's names."""
