"""HTTP serving of a trained model: the API, the upload page and the taxonomy browser (``pmv serve``)."""
