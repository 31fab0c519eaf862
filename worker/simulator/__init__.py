"""A Halo Cloud simulator for tests, the demo, benchmarks and integrators' rehearsals.

In process: ``Simulator(key=...)`` with ``.transport()`` for httpx; on loopback: ``serve(sim)``;
from another process: ``SimulatorControl(url)``; from the shell: ``halo-reconciler simulator``.
"""

from worker.simulator.app import Simulator, SimulatorConfigError
from worker.simulator.faults import Fault, FaultError
from worker.simulator.server import SimulatorServer, serve

__all__ = ["Fault", "FaultError", "Simulator", "SimulatorConfigError", "SimulatorServer", "serve"]
