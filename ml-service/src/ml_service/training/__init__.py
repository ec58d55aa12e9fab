"""Teaching a classifier head from labelled examples (`ml-service models train`, `POST /models/{name}/train`)."""
