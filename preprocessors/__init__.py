"""De-stylisation preprocessors (HED contour, lineart): networks and post-processing, plain torch."""
