"""One codec per protocol: its wire format <-> the data plane's request and result, and its error shape.

No codec imports the service or HTTP: routes in `ml_service.api` read the bytes, call a codec to decode,
call `InferenceService`, and call the codec again to encode.
"""
