"""Stands in for easyocr, which needs torch, so that desktop-env's metrics package (which imports
every metric module) loads. The one metric that uses it, compare_image_text, is not used by these
tests; calling it fails here, loudly."""


class Reader:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("easyocr is not installed here (it needs torch): compare_image_text cannot run")
