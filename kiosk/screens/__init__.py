"""The touchscreen app (Kivy): screens bound to the engine's typed step views.

Only ``keyboards/`` exists so far: the on-screen keyboard layouts, loadable without Kivy.
"""
