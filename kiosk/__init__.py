"""The Kivy touch UI at the gate: visitor check-in and the guard console.

It owns the screen and the camera and talks to the edge agent only through
the agent's local API; it never touches GPIO, the journal or the network.
"""
