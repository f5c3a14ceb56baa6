"""The data plane: decode and validate Open Inference Protocol requests, look up the cache, ask the
router, batch and run on a runtime, account energy and carbon, encode the response.

No Ray and no HTTP server here (``import serving`` never imports ``ray``): ``gateway/`` wraps this
room in Ray Serve and HTTP, and tests drive :class:`serving.dataplane.DataPlane` directly.
"""
