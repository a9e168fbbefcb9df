"""The kiosk's widgets: big buttons, wrapped labels, number and PIN pads, a keyboard field, status, progress.

Every widget takes the :class:`~kiosk.screens.theme.Theme` and, when it shows words of its own, the
:class:`~kiosk.i18n.Translator`; none holds a text that did not come through the Translator.  Labels
wrap to their width and grow to their text (:class:`Text`), so nothing is cut off at 800×480.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from kivy.clock import Clock
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.progressbar import ProgressBar
from kivy.uix.textinput import TextInput
from kivy.uix.vkeyboard import VKeyboard
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.pin import Pin
from kiosk.screens.keyboards import layout_path
from kiosk.screens.theme import Theme

MASK = "\u2022"          # • in NotoSans; the PIN's digits are never drawn


class Text(Label):
    """A label that wraps at its width and is as tall as its text."""

    def __init__(self, theme: Theme, text: str, size: float | None = None, bold: bool = False,
                 color: tuple[float, float, float, float] | None = None, halign: str = "left", **kw: Any) -> None:
        super().__init__(text=text, font_size=size or theme.body_size, bold=bold, color=color or theme.text,
                         halign=halign, valign="middle", size_hint_y=None, **kw)
        self.bind(width=lambda *_: setattr(self, "text_size", (self.width, None)),
                  texture_size=lambda *_: setattr(self, "height", self.texture_size[1]))


def title(theme: Theme, text: str, **kw: Any) -> Text:
    return Text(theme, text, size=theme.title_size, bold=True, **kw)


class BigButton(Button):
    """A touch target at least ``theme.touch`` high; its text wraps inside it."""

    def __init__(self, theme: Theme, text: str, on_press: Callable[[], None], kind: str = "primary",
                 **kw: Any) -> None:
        background = {"primary": theme.primary, "secondary": theme.secondary, "danger": theme.danger}[kind]
        color = theme.secondary_text if kind == "secondary" else theme.primary_text
        kw.setdefault("size_hint_y", None)
        kw.setdefault("height", theme.touch)
        super().__init__(text=text, font_size=theme.button_size, color=color, background_normal="",
                         background_color=background, halign="center", valign="middle", **kw)
        self._action = on_press
        self._touch = theme.touch
        self.bind(width=lambda *_: setattr(self, "text_size", (max(self.width - theme.padding, 1), None)),
                  texture_size=self._grow)

    @property
    def needed_height(self) -> float:
        """The height its wrapped text needs, never less than a touch target."""
        return float(max(self._touch, self.texture_size[1] + self.font_size * 0.8))

    def _grow(self, *_: Any) -> None:
        if self.size_hint_y is None:
            self.height = self.needed_height

    def on_release(self) -> None:
        self._action()


class ButtonRow(BoxLayout):
    """Buttons side by side, as tall as the tallest."""

    def __init__(self, theme: Theme, *buttons: BigButton) -> None:
        super().__init__(orientation="horizontal", spacing=theme.spacing, size_hint_y=None, height=theme.touch)
        for button in buttons:
            button.size_hint_y = 1
            self.add_widget(button)
            button.bind(texture_size=self._fit)

    def _fit(self, *_: Any) -> None:
        needed: list[float] = [c.needed_height for c in self.children]
        if needed:
            self.height = max(needed)


class NumericPad(GridLayout):
    """Digits 0-9, erase and OK; ``on_digit(d)``, ``on_erase()``, ``on_ok()``."""

    def __init__(self, theme: Theme, t: Translator, on_digit: Callable[[str], None], on_erase: Callable[[], None],
                 on_ok: Callable[[], None], **kw: Any) -> None:
        super().__init__(cols=3, spacing=theme.spacing / 2, **kw)
        for digit in "123456789":
            self.add_widget(BigButton(theme, digit, partial(on_digit, digit), kind="secondary",
                                      size_hint_y=1))
        self.add_widget(BigButton(theme, t("screens.pad.erase"), on_erase, kind="secondary", size_hint_y=1))
        self.add_widget(BigButton(theme, "0", lambda: on_digit("0"), kind="secondary", size_hint_y=1))
        self.add_widget(BigButton(theme, t("screens.pad.ok"), on_ok, size_hint_y=1))


class PinPad(BoxLayout):
    """A masked PIN entry: on the left the prompt, a row of dots, the tries left and ``info`` (rules, a
    message); on the right a numeric pad.  ``take()`` hands over the PIN once."""

    def __init__(self, theme: Theme, t: Translator, prompt: str, on_ok: Callable[[], None],
                 max_length: int = 16, tries_left: int | None = None,
                 on_change: Callable[[], None] | None = None, info: tuple[Widget, ...] = (), **kw: Any) -> None:
        super().__init__(orientation="horizontal", spacing=theme.spacing * 2, **kw)
        self._digits: list[str] = []
        self._changed = on_change or (lambda: None)
        self._max = max_length
        self.prompt = Text(theme, prompt, bold=True)
        self.dots = Text(theme, "", size=theme.title_size, halign="center")
        self.dots.bind(texture_size=lambda *_: setattr(self.dots, "height", max(self.dots.texture_size[1],
                                                                                   theme.title_size * 1.5)))
        left = BoxLayout(orientation="vertical", spacing=theme.spacing, size_hint_x=0.5)
        for label in (self.prompt, self.dots):
            left.add_widget(label)
        if tries_left is not None:
            left.add_widget(Text(theme, t("screens.pin.tries_left", tries=tries_left),
                                 color=theme.danger if tries_left <= 1 else theme.muted))
        for widget in info:
            left.add_widget(widget)
        left.add_widget(Widget())
        self.add_widget(left)
        self.pad = NumericPad(theme, t, self._digit, self._erase, on_ok, size_hint_x=0.5)
        self.add_widget(self.pad)

    def __repr__(self) -> str:
        return f"PinPad({len(getattr(self, '_digits', ()))} digits)"

    @property
    def length(self) -> int:
        return len(self._digits)

    def _digit(self, digit: str) -> None:
        if len(self._digits) < self._max:
            self._digits.append(digit)
            self.dots.text = MASK * len(self._digits)
            self._changed()

    def _erase(self) -> None:
        if self._digits:
            self._digits.pop()
        self.dots.text = MASK * len(self._digits)
        self._changed()

    def take(self) -> Pin:
        """The typed PIN as a secret; the pad is cleared."""
        pin = Pin("".join(self._digits))
        self.clear()
        return pin

    def peek(self) -> Pin:
        """The typed PIN as a secret without clearing (live policy checks)."""
        return Pin("".join(self._digits))

    def clear(self) -> None:
        self._digits.clear()
        self.dots.text = ""


class KeyboardField(BoxLayout):
    """A text field with the on-screen keyboard of ``layout`` (a name of ``kiosk.screens.keyboards``).

    A USB QR/barcode scanner is a keyboard: with the field focused its keystrokes go into it, and its
    Enter submits, like the on-screen keyboard's Enter key.
    """

    def __init__(self, theme: Theme, layout: str, on_submit: Callable[[str], None], hint: str = "",
                 keyboard: bool = True, beside: tuple[Widget, ...] = (), **kw: Any) -> None:
        super().__init__(orientation="vertical", spacing=theme.spacing, **kw)
        self._submit = on_submit
        self.field = TextInput(multiline=False, font_size=theme.title_size, size_hint_y=None,
                               height=theme.touch, hint_text=hint, write_tab=False)
        self.field.bind(on_text_validate=lambda *_: self._submit(self.field.text))
        if beside:            # buttons on the field's row leave the keyboard the height its keys need
            self.field.size_hint_x = 0.34
            row = BoxLayout(orientation="horizontal", spacing=theme.spacing, size_hint_y=None, height=theme.touch)
            row.add_widget(self.field)
            for button in beside:
                row.add_widget(button)

            def fit(*_: Any) -> None:       # as tall as the tallest button's wrapped text
                row.height = max(theme.touch, *(getattr(b, "needed_height", theme.touch) for b in beside))
            for button in beside:
                button.bind(texture_size=fit)
            self.add_widget(row)
        else:
            self.add_widget(self.field)
        self.keyboard: VKeyboard | None = None
        if keyboard:
            # Keys over the whole widget: Kivy's default margins (6 % and 5 % of each side) leave keys
            # smaller than a touch target at 800x480.
            self.keyboard = VKeyboard(layout=str(layout_path(layout)), size_hint=(1, 1), do_translation=False,
                                      do_rotation=False, do_scale=False, font_size=theme.button_size,
                                      margin_hint=[0, 0, 0, 0], key_margin=[2, 2, 2, 2])
            self.keyboard.bind(on_key_up=self._key)
            # Kivy's VKeyboard lays its keys out once, at the size it has when its layout loads; keys that
            # follow its size stay as large as the widget the layout gives it.
            self._relayout = Clock.create_trigger(lambda _dt: self._fit_keys())
            self.keyboard.bind(size=lambda *_: self._relayout())
            self.add_widget(self.keyboard)

    def _fit_keys(self) -> None:
        keyboard = self.keyboard
        if keyboard is not None and keyboard.layout in keyboard.available_layouts:
            keyboard.refresh(True)

    @property
    def text(self) -> str:
        return str(self.field.text)

    def _key(self, _keyboard: VKeyboard, keycode: Any, text: str | None, _modifiers: Any) -> None:
        name = keycode[1] if isinstance(keycode, tuple) else keycode
        if name == "backspace":
            self.field.do_backspace()
        elif name == "enter":
            self._submit(self.field.text)
        elif text:
            self.field.insert_text(text)

    def clear(self) -> None:
        self.field.text = ""


class StatusBar(BoxLayout):
    """One line: card reader, eToken, printer, central online/offline, items waiting to sync."""

    PARTS = ("reader", "token", "printer", "central", "queue")

    def __init__(self, theme: Theme, **kw: Any) -> None:
        super().__init__(orientation="horizontal", size_hint_y=None, height=theme.small_size * 3.2,
                         padding=(theme.padding / 2, 0), spacing=theme.spacing, **kw)
        self._theme = theme
        self.labels: dict[str, Label] = {}
        for part in self.PARTS:
            label = Label(text="", font_size=theme.small_size, color=theme.status_text, shorten=False,
                          halign="center", valign="middle")
            label.bind(size=lambda lab, *_: setattr(lab, "text_size", lab.size))
            self.labels[part] = label
            self.add_widget(label)
        with self.canvas.before:
            from kivy.graphics import Color, Rectangle
            Color(*theme.status_background)
            self._bg = Rectangle(pos=self.pos, size=self.size)
        self.bind(pos=lambda *_: setattr(self._bg, "pos", self.pos),
                  size=lambda *_: setattr(self._bg, "size", self.size))

    def show(self, texts: dict[str, str]) -> None:
        for part, text in texts.items():
            self.labels[part].text = text


class ProgressPanel(BoxLayout):
    """A progress bar with an honest estimate: the seconds left from the measured duration of the step.

    The bar never reaches its end before the work does; past the estimate it says so instead of
    pretending (``screens.progress.longer``).
    """

    def __init__(self, theme: Theme, t: Translator, what: str, estimate_s: float, **kw: Any) -> None:
        super().__init__(orientation="vertical", spacing=theme.spacing, **kw)
        self._t = t
        self._estimate = max(estimate_s, 0.5)
        self._started = time.monotonic()
        self.what = Text(theme, what, size=theme.title_size, bold=True, halign="center")
        self.bar = ProgressBar(max=100, value=0, size_hint_y=None, height=theme.touch / 2)
        self.left = Text(theme, "", halign="center", color=theme.muted)
        for child in (self.what, self.bar, self.left):
            self.add_widget(child)
        self.add_widget(Widget())
        self._event = Clock.schedule_interval(lambda _dt: self.tick(), 0.25)
        self.tick()

    def tick(self) -> None:
        elapsed = time.monotonic() - self._started
        self.bar.value = min(95.0, 100.0 * elapsed / self._estimate)
        remaining = round(self._estimate - elapsed)
        self.left.text = (self._t("screens.progress.seconds_left", seconds=remaining) if remaining >= 1
                          else self._t("screens.progress.longer"))

    def stop(self) -> None:
        self._event.cancel()
