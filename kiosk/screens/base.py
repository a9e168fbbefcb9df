"""The base of every screen: how a screen registers, calls the worker and navigates.

A screen is a :class:`KioskScreen` subclass with a unique ``screen_name``; a screen module lists its
classes in ``SCREENS`` and the (flow, step) pairs it shows in ``ROUTES``, and the app registers every
module of :data:`kiosk.screens.app.SCREEN_MODULES` (plus ``kiosk.screens.clerk`` when it exists) at
start.  A screen builds its widgets in :meth:`render` from the keyword parameters it was shown with, in
the language of the moment, and :meth:`forget` drops what it showed (the idle timeout calls it on every
screen).  It is rebuilt every time it is shown, unless its :meth:`reuse_key` says its widgets hold no
personal data and depend only on that key: shown again with the same key, language and theme, it keeps
them (the welcome screen, the consent text) and only takes the new parameters.

Navigation is by name: ``self.app.show("order_summary", result=r)``, or by a step result:
``self.app.show_result(r)`` picks the screen from the step and the view (a step that needs no input
shows progress and continues by itself; see :meth:`KioskApp.route`).  Blocking work goes through
``self.run(call, on_done)``, which runs ``call`` on the worker thread; a KioskError it raises is shown
as a calm error screen whose "try again" repeats the call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.engine import StepResult
from kiosk.errors import KioskError
from kiosk.i18n import Translator
from kiosk.screens.theme import Theme
from kiosk.screens.widgets import BigButton, ButtonRow, Text, title

if TYPE_CHECKING:
    from kiosk.screens.app import KioskApp


class KioskScreen(Screen):
    """One screen; subclasses set ``screen_name`` and implement :meth:`render`."""

    screen_name: ClassVar[str]
    #: Builds the screen's widgets from the keyword parameters it is shown with (each subclass names its own).
    render: Callable[..., None]
    busy: bool = False           # True while the screen waits for work with no human input (no idle timeout)

    def __init__(self, app: KioskApp) -> None:
        super().__init__(name=self.screen_name)
        self.app = app
        self.params: dict[str, Any] = {}
        self._built: Hashable | None = None        # (language, theme, reuse key) of the widgets kept, or None

    @property
    def t(self) -> Translator:
        return self.app.t

    @property
    def theme(self) -> Theme:
        return self.app.theme

    @property
    def result(self) -> StepResult:
        """The step result the screen was shown with (flow screens)."""
        result: StepResult = self.params["result"]
        return result

    def reuse_key(self, **params: Any) -> Hashable | None:
        """What the widgets depend on besides the language and the theme, when they hold no personal data
        and may be kept while the screen is shown again with an equal key; None (the default): rebuild."""
        return None

    def show_with(self, params: dict[str, Any]) -> None:
        key = self.reuse_key(**params)
        built = None if key is None else (self.app.language, self.theme, key)
        if built is not None and built == self._built:
            self.busy = False
            self.params = params
            return
        self._built = None
        self.forget()
        self.params = params
        self.render(**params)
        self._built = built

    def forget(self) -> None:
        """Drop the parameters and the widgets (personal data shown or typed here); widgets kept by
        :meth:`reuse_key` hold none and stay."""
        self.busy = False
        self.params = {}
        if self._built is None:
            self.clear_widgets()

    def run(self, call: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[KioskError], None] | None = None) -> None:
        """``call`` on the worker; its result to ``on_done`` (default: show it as a step result)."""
        retry = lambda: self.run(call, on_done, on_error)  # noqa: E731
        self.app.worker.submit(call, on_done or self.app.show_result,
                               on_error or (lambda err: self.app.show_error(err, retry=retry)),
                               label=f"{self.screen_name}")

    # -- layout helpers -------------------------------------------------------------------------------------
    def frame(self, heading: str, *body: Widget, buttons: tuple[BigButton, ...] = (), scroll: bool = True,
              note: str = "") -> None:
        """The standard screen: a heading (no row at all when empty; ``note`` in small type beside it), the body
        (scrolled when taller than the screen), a row of buttons."""
        th = self.theme
        outer = BoxLayout(orientation="vertical", padding=th.padding, spacing=th.spacing)
        if heading and note:       # one row for both: the height goes to the body (an on-screen keyboard)
            row = BoxLayout(orientation="horizontal", spacing=th.spacing, size_hint_y=None)
            parts = (title(th, heading, size_hint_x=0.3), Text(th, note, size=th.small_size, size_hint_x=0.7))
            for part in parts:
                row.add_widget(part)
                part.bind(height=lambda *_: setattr(row, "height", max(p.height for p in parts)))
            outer.add_widget(row)
        elif heading:
            outer.add_widget(title(th, heading))
        column = BoxLayout(orientation="vertical", spacing=th.spacing, size_hint_y=None if scroll else 1)
        for widget in body:
            column.add_widget(widget)
        if scroll:
            column.bind(minimum_height=column.setter("height"))
            view = ScrollView(do_scroll_x=False, bar_width=th.spacing)
            view.add_widget(column)
            outer.add_widget(view)
        else:
            outer.add_widget(column)
        if buttons:
            outer.add_widget(ButtonRow(th, *buttons))
        self.add_widget(outer)

    def button(self, key: str, action: Callable[[], None], kind: str = "primary", **data: Any) -> BigButton:
        return BigButton(self.theme, self.t(key, **data), action, kind=kind)

    def leave_button(self) -> BigButton:
        """Back to the welcome screen; the session stays in the store (the clerk may resume it)."""
        return self.button("screens.button.start_over", self.app.go_home, kind="secondary")


RouteTarget = str | Callable[[StepResult], str]
