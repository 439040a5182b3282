"""The live sessions of one server, by id and by room."""

from __future__ import annotations

from collections.abc import Iterator

from framework.transport.websocket.session import Session

__all__ = ["SessionRegistry"]


class SessionRegistry:
    """Sessions by id plus a room -> members index; rooms vanish when their last member leaves.

    Everything runs on the event loop thread, so no locking; fan-out iterates over a snapshot
    of a room, so a session closing during a send cannot disturb it.
    """

    __slots__ = ("_rooms", "_sessions")

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._rooms: dict[str, set[Session]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(tuple(self._sessions.values()))

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def get(self, session_id: str) -> Session | None:
        """The session with this id, or ``None`` if it is not connected."""
        return self._sessions.get(session_id)

    def add(self, session: Session) -> None:
        """Register a newly connected session."""
        if session.id in self._sessions:
            raise ValueError(f"duplicate websocket session id {session.id!r}")
        self._sessions[session.id] = session

    def remove(self, session: Session) -> None:
        """Forget a session and take it out of every room."""
        self._sessions.pop(session.id, None)
        for room in tuple(session.rooms_joined):
            self.leave(session, room)

    def join(self, session: Session, room: str) -> None:
        """Put ``session`` in ``room``."""
        self._rooms.setdefault(room, set()).add(session)
        session.rooms_joined.add(room)

    def leave(self, session: Session, room: str) -> None:
        """Take ``session`` out of ``room``."""
        members = self._rooms.get(room)
        if members is not None:
            members.discard(session)
            if not members:
                del self._rooms[room]
        session.rooms_joined.discard(room)

    def members(self, room: str) -> tuple[Session, ...]:
        """A snapshot of the sessions in ``room`` (empty if the room does not exist)."""
        members = self._rooms.get(room)
        return tuple(members) if members else ()

    def rooms(self) -> dict[str, int]:
        """Room name -> member count."""
        return {room: len(members) for room, members in self._rooms.items()}
