"""How people steer a running agent from another thread: pause, resume, stop, talk to it,
approve or deny a held action, take the desktop over and hand it back. The loop calls the
`wait_*`/`take_*` side between steps."""

from __future__ import annotations

import threading
import time


class Stopped(Exception):
    """A human stopped the run."""


class RunControl:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._paused = False
        self._stopped = False
        self._messages: list[str] = []
        self._decisions: dict[str, tuple[bool, str]] = {}
        self.pending: dict[str, dict] = {}  # approval id -> what waits for a decision
        self._taken_over = False
        self._human_actions: list[str] = []  # what the human did while in control, described
        self._handed_back: list[str] | None = None

    # -- the human's side ---------------------------------------------------------------

    def pause(self) -> None:
        with self._changed:
            self._paused = True
            self._changed.notify_all()

    def resume(self) -> None:
        with self._changed:
            self._paused = False
            self._changed.notify_all()

    def take_over(self) -> bool:
        """A human takes control of the desktop: the run pauses, and tool calls the model
        makes meanwhile are not carried out. False if a human already has control."""
        with self._changed:
            if self._taken_over:
                return False
            self._taken_over = True
            self._paused = True
            self._human_actions = []
            self._changed.notify_all()
            return True

    def note_human_action(self, description: str) -> None:
        with self._changed:
            if self._taken_over:
                self._human_actions.append(description)

    def hand_back(self) -> list[str] | None:
        """The human gives control back and the run resumes; the loop then tells the model
        what they did. Returns that, or None if no human had control."""
        with self._changed:
            if not self._taken_over:
                return None
            self._taken_over = False
            self._paused = False
            self._handed_back = self._human_actions
            self._human_actions = []
            self._changed.notify_all()
            return self._handed_back

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def post_message(self, text: str) -> None:
        with self._changed:
            self._messages.append(text)
            self._changed.notify_all()

    def decide(self, approval_id: str, approve: bool, note: str = "") -> bool:
        """False when nothing waits under that id (already decided, or never asked)."""
        with self._changed:
            if approval_id not in self.pending:
                return False
            self._decisions[approval_id] = (approve, note)
            self.pending.pop(approval_id)
            self._changed.notify_all()
            return True

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def taken_over(self) -> bool:
        return self._taken_over

    # -- the loop's side ----------------------------------------------------------------

    def wait_while_paused(self) -> bool:
        """Block while paused; True if it had to wait. Raises Stopped once stopped."""
        with self._changed:
            waited = False
            while self._paused and not self._stopped:
                waited = True
                self._changed.wait()
            if self._stopped:
                raise Stopped()
            return waited

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up and raise Stopped as soon as the run is stopped."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while not self._stopped and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            if self._stopped:
                raise Stopped()

    @property
    def has_messages(self) -> bool:
        return bool(self._messages)

    def take_handed_back(self) -> list[str] | None:
        """What the human did, once, after they handed control back; None otherwise."""
        with self._changed:
            handed, self._handed_back = self._handed_back, None
            return handed

    def take_messages(self) -> list[str]:
        with self._changed:
            messages, self._messages = self._messages, []
            return messages

    def wait_for_decision(self, approval_id: str, what: dict) -> tuple[bool, str]:
        with self._changed:
            self.pending[approval_id] = what
            while approval_id not in self._decisions and not self._stopped:
                self._changed.wait()
            if self._stopped:
                self.pending.pop(approval_id, None)
                raise Stopped()
            return self._decisions.pop(approval_id)
