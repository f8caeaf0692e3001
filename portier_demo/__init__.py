"""The demo: the reference central, a door agent on simulated hardware and the kiosk, wired up.

It sits above the three packages it wires (``central``, ``edge_agent``, ``kiosk``), so it is a
package of its own: none of them imports it (``edge-agent demo`` launches it lazily, the one
exception listed in the import contracts, see docs/architecture.md).
"""
