"""The kiosk's Kivy user interface: the app, shared widgets and one module + kv file per screen.

Importing anything below this package imports Kivy, which reads its
configuration at import: call :func:`kiosk.app.configure_kivy` first (the
``kiosk`` command and the tests do).
"""
