"""A Halo Cloud simulator for tests, the demo, benchmarks and integrators' rehearsals.

In process: ``Simulator(key=...)`` with ``.transport()`` for sync httpx clients, ``.app()`` (or
``create_app(sim)``) for the ASGI app; on loopback: ``serve(sim)``; from another process:
``SimulatorControl(url, key=...)``; from the shell: ``halo-reconciler simulator``.
"""

from worker.simulator.app import SimulatorConfigError
from worker.simulator.faults import Fault, FaultError
from worker.simulator.routes import Simulator, create_app
from worker.simulator.server import SimulatorServer, serve

__all__ = ["Fault", "FaultError", "Simulator", "SimulatorConfigError", "SimulatorServer", "create_app", "serve"]
