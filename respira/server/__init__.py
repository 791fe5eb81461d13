"""The HTTP adapter: a FastAPI app over the core (predict, detect) and one static page.

    from respira.server import ServerSettings, create_app
    app = create_app(ServerSettings(models=("cough",), token="secret"))   # uvicorn.run(app)
"""

from respira.server.app import create_app
from respira.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
