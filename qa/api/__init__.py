"""HTTP edge: a FastAPI service over :class:`qa.pipeline.QAPipeline` (``qa serve``).

``create_app`` builds the app; ``qa.api.server.serve`` runs it under uvicorn.
"""

from qa.api.app import create_app

__all__ = ["create_app"]
