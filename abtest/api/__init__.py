"""The traffic-splitting service (FastAPI): assign, run flows, record exposures and outcomes.

One module per job: `app` (create_app, lifespan), `routes`, `run_request` (the run body, JSON
or multipart), `models`, `errors` (one JSON error shape), `security` (bearer keys),
`middleware` (keys, body limits, metrics), `state` (what routes get from `app.state`),
`lean_route` (the assignment hot path). Keys, credentials and run inputs are never logged.
"""

from abtest.api.app import create_app

__all__ = ["create_app"]
