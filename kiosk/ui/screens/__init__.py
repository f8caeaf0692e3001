"""One :class:`~kivy.uix.screenmanager.Screen` subclass and one kv file per screen.

Each kv file only lays out, binds properties and calls one method of its
screen; the logic is in the screen's Python module.
"""
