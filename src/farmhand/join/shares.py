"""How to reach the hub's shares from this OS, in the words of its own file manager."""

from __future__ import annotations

from farmhand.join.platforms import OS


def share_hints(os_: OS, hub: str, user: str, shares: list[str], password_file: str) -> list[str]:
    """Lines to print once the hub answers: one way per share, then where the password is."""
    lines = []
    for share in shares:
        if os_ is OS.MACOS:
            lines.append(
                f"{share}: Finder > Go > Connect to Server: smb://{user}@{hub}/{share}"
                f"  (or: open smb://{user}@{hub}/{share})"
            )
        elif os_ is OS.WINDOWS:
            lines.append(
                f"{share}: Explorer address bar: \\\\{hub}\\{share}"
                f"  (or: net use * \\\\{hub}\\{share} /user:{user} *)"
            )
        else:
            lines.append(
                f"{share}: gio mount smb://{user}@{hub}/{share}"
                f"  (or: sudo mount -t cifs //{hub}/{share} /mnt/{share} "
                f"-o username={user},uid=$(id -u),gid=$(id -g))"
            )
    lines.append(f"SMB user {user}; the password is in {password_file} (readable only by you)")
    return lines
