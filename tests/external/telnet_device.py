#!/usr/bin/env python3
"""A Cisco IOS-XE router (CSR1000v "R1") as seen over Telnet: the program a real telnetd runs.

telnetd (BusyBox ``telnetd -l``) gives this program a pty on stdin/stdout and does the Telnet
protocol itself; this program only does what IOS does on a vty line, from a transcript's point
of view. The pty's line discipline does the rest, as for any login program: it echoes what is
typed (echo is switched off with termios while a password is read), turns CR into LF on input
and LF into CR LF on output.

Behaviour:

* banner (motd), ``User Access Verification``, ``Username: ``, ``Password: `` (not echoed);
  a wrong login answers ``% Login invalid`` and asks ``Username: `` again; the connection is
  closed after 3 failures. Line-password variant (``--login line``): ``Password: `` only, a
  wrong one asks again, ``% Bad passwords`` and close after 3. No-login variant (``--login
  none``): the transport already authenticated the user (an sshd runs this program as its
  ForceCommand), so the banner is followed by the prompt; no password is needed.
* ``R1>``; ``enable`` -> ``Password: `` -> ``R1#`` (``% Access denied`` when wrong);
  ``disable``; ``terminal length N`` / ``terminal width N``; ``show version``, ``show clock``,
  ``show ip interface brief``, ``show running-config``, ``show startup-config``.
* Output longer than the terminal length (24 unless ``terminal length`` changed it; 0 = never)
  pages with `` --More-- ``: space shows the next screen, Return one more line, anything else
  stops; the pager is erased with backspaces, blanks, backspaces.
* ``configure terminal`` -> ``R1(config)#``, ``interface X`` -> ``R1(config-if)#``,
  ``description ...``, ``ip address``, ``shutdown``, ``exit``, ``end``, ``do ...``;
  ``write memory`` / ``copy running-config startup-config`` (``Destination filename
  [startup-config]? ``) -> ``Building configuration...`` ``[OK]``; ``reload`` ->
  ``Proceed with reload? [confirm]`` (Return/y closes the connection, anything else cancels).
* Unknown input: ``% Invalid input detected at '^' marker.`` under a caret line (the caret
  counts the prompt, as on IOS), ``% Incomplete command.``, ``% Ambiguous command:``.
  Keywords may be abbreviated (``sh ver``, ``conf t``, ``copy run start``, ``wr``).
* ``exit`` / ``logout`` in exec mode closes the connection.

Configuration (environment, set by the test; passwords never on a command line):
  TELNET_DEVICE_USERNAME, TELNET_DEVICE_PASSWORD, TELNET_DEVICE_ENABLE_SECRET (empty: "% No
  password set"), TELNET_DEVICE_LOGIN (``local`` | ``line`` | ``none``, or ``--login`` in argv),
  TELNET_DEVICE_HOSTNAME (R1), TELNET_DEVICE_LOG (a file for an event log, optional),
  TELNET_DEVICE_AUTHZ_DENY (comma-separated commands refused with "Command authorization
  failed.", e.g. ``terminal length`` as under AAA command authorization),
  TELNET_DEVICE_IDLE_TIMEOUT (seconds, default 600; the line's exec-timeout).

The event log never contains a password: passwords typed at prompts are not logged, and a
command line that contains a configured password (typed at the wrong prompt) is logged as
``SECRET-AT-PROMPT`` with the line masked.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import select
import sys
import time

try:
    import termios
except ImportError:  # pragma: no cover - POSIX only
    termios = None  # type: ignore

# ---------------------------------------------------------------------------------------------
# Static content (importable by the tests: the expected outputs)
# ---------------------------------------------------------------------------------------------
BANNER = """
**************************************************************************
* R1 - lab router. Unauthorized access to this device is prohibited!     *
* You must have explicit, authorized permission to access or configure   *
* this device. All activities performed on this device are logged.       *
**************************************************************************
"""

SHOW_VERSION = """Cisco IOS XE Software, Version 16.09.05
Cisco IOS Software [Fuji], Virtual XE Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), Version 16.9.5, RELEASE SOFTWARE (fc1)
Technical Support: http://www.cisco.com/techsupport
Copyright (c) 1986-2020 by Cisco Systems, Inc.
Compiled Thu 30-Jan-20 18:48 by mcpre


Cisco IOS-XE software, Copyright (c) 2005-2020 by cisco Systems, Inc.
All rights reserved.  Certain components of Cisco IOS-XE software are
licensed under the GNU General Public License ("GPL") Version 2.0.  The
software code licensed under GPL Version 2.0 is free software that comes
with ABSOLUTELY NO WARRANTY.  You can redistribute and/or modify such
GPL code under the terms of GPL Version 2.0.  For more details, see the
documentation or "License Notice" file accompanying the IOS-XE software,
or the applicable URL provided on the flyer accompanying the IOS-XE
software.


ROM: IOS-XE ROMMON

{hostname} uptime is 1 hour, 12 minutes
Uptime for this control processor is 1 hour, 14 minutes
System returned to ROM by reload
System image file is "bootflash:packages.conf"
Last reload reason: reload

License Level: ax
License Type: Default. No valid license found.
Next reload license Level: ax

cisco CSR1000V (VXE) processor (revision VXE) with 2392579K/3075K bytes of memory.
Processor board ID 9ESGOBARV9D
4 Gigabit Ethernet interfaces
32768K bytes of non-volatile configuration memory.
3985132K bytes of physical memory.
7774207K bytes of virtual hard disk at bootflash:.
0K bytes of WebUI ODM Files at webui:.

Configuration register is 0x2102
"""

INTERFACE_TYPES = ("GigabitEthernet", "Loopback")


def initial_interfaces() -> dict:
    return {
        "GigabitEthernet1": {"description": "Uplink to core", "ip": ("10.0.0.1", "255.255.255.0"), "shutdown": False},
        "GigabitEthernet2": {"description": "", "ip": ("192.168.12.1", "255.255.255.0"), "shutdown": False},
        "GigabitEthernet3": {"description": "", "ip": None, "shutdown": True},
        "GigabitEthernet4": {"description": "", "ip": None, "shutdown": True},
        "Loopback0": {"description": "router-id", "ip": ("1.1.1.1", "255.255.255.255"), "shutdown": False},
    }


def iface_sort_key(name: str):
    m = re.match(r"([A-Za-z]+)(\d+)", name)
    return (INTERFACE_TYPES.index(m.group(1)), int(m.group(2))) if m else (99, 0)


def show_version(hostname: str = "R1") -> str:
    return SHOW_VERSION.format(hostname=hostname)


def show_ip_interface_brief(interfaces: dict) -> str:
    lines = ["Interface              IP-Address      OK? Method Status                Protocol"]
    for name in sorted(interfaces, key=iface_sort_key):
        i = interfaces[name]
        ip = i["ip"][0] if i["ip"] else "unassigned"
        status, proto = ("administratively down", "down") if i["shutdown"] else ("up", "up")
        lines.append(f"{name:<23}{ip:<16}YES NVRAM  {status:<22}{proto:<8}")
    return "\n".join(lines) + "\n"


def show_clock(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"*{now:%H:%M:%S}.{now.microsecond // 1000:03d} UTC {now:%a %b} {now.day} {now.year}\n"


CLOCK_RE = re.compile(r"^\*\d{2}:\d{2}:\d{2}\.\d{3} UTC \w{3} \w{3} \d{1,2} \d{4}$")


def config_text(hostname: str, interfaces: dict, extra: list) -> str:
    """The configuration body (``show running-config`` without its two header lines)."""
    out = [
        "!",
        "! Last configuration change at 09:14:02 UTC Mon Nov 23 2026 by netops",
        "!",
        "version 16.9",
        "service timestamps debug datetime msec",
        "service timestamps log datetime msec",
        "platform qfp utilization monitor load 80",
        "no platform punt-keepalive disable-kernel-core",
        "platform console virtual",
        "!",
        f"hostname {hostname}",
        "!",
        "boot-start-marker",
        "boot-end-marker",
        "!",
        "!",
        "enable secret 5 $1$mERr$hx5rVt7rPNoS4wqbXKX7m0",
        "!",
        "no aaa new-model",
        "!",
        "!",
        "!",
        "!",
        "!",
        "!",
        "!",
        "no ip domain lookup",
        "ip domain name lab.example",
        "!",
        "!",
        "!",
        "login on-success log",
        "!",
        "!",
        "!",
        "!",
        "!",
        "!",
        "!",
        "subscriber templating",
        "!",
        "!",
        "!",
        "!",
        "!",
        "multilink bundle-name authenticated",
        "!",
        "!",
        "!",
        "license udi pid CSR1000V sn 9ESGOBARV9D",
        "no license smart enable",
        "diagnostic bootup level minimal",
        "!",
        "spanning-tree extend system-id",
        "!",
        "!",
        "!",
        "username netops privilege 15 secret 5 $1$Ab3d$Qk3oP0vM1rS5tU7wX9yZa.",
        "!",
        "redundancy",
        "!",
        "!",
        "!",
        "!",
        "!",
        "!",
    ]
    for name in sorted(interfaces, key=iface_sort_key):
        i = interfaces[name]
        out.append("!")
        out.append(f"interface {name}")
        if i["description"]:
            out.append(f" description {i['description']}")
        if i["ip"]:
            out.append(f" ip address {i['ip'][0]} {i['ip'][1]}")
        else:
            out.append(" no ip address")
        if i["shutdown"]:
            out.append(" shutdown")
        if name.startswith("GigabitEthernet"):
            out += [" negotiation auto", " no mop enabled", " no mop sysid"]
    out += ["!"] + list(extra) + [
        "ip forward-protocol nd",
        "no ip http server",
        "no ip http secure-server",
        "ip route 0.0.0.0 0.0.0.0 10.0.0.254",
        "!",
        "ip ssh version 2",
        "!",
        "!",
        "!",
        "!",
        "!",
        "control-plane",
        "!",
        "!",
        "!",
        "!",
        "!",
        "!",
        "line con 0",
        " stopbits 1",
        "line vty 0 4",
        " login local",
        " transport input telnet ssh",
        "!",
        "!",
        "!",
        "!",
        "!",
        "!",
        "end",
    ]
    return "\n".join(out) + "\n"


def show_running_config(hostname: str, interfaces: dict, extra: list) -> str:
    body = config_text(hostname, interfaces, extra)
    return f"Building configuration...\n\nCurrent configuration : {len(body)} bytes\n" + body


INVALID = "% Invalid input detected at '^' marker."
MORE = " --More-- "
MORE_ERASE = "\b" * len(MORE) + " " * len(MORE) + "\b" * len(MORE)


# ---------------------------------------------------------------------------------------------
# The line (pty) and the event log
# ---------------------------------------------------------------------------------------------
class Hangup(Exception):
    """The connection went away (EOF/EIO on the pty) or the exec-timeout passed."""


class Line:
    def __init__(self, idle_timeout: float):
        self.idle_timeout = idle_timeout
        self.buf = b""
        self.tty = termios is not None and os.isatty(0)
        if self.tty:
            a = termios.tcgetattr(0)
            a[0] |= termios.ICRNL  # CR typed -> LF
            a[0] &= ~(termios.IXON | termios.IXOFF | termios.INLCR | termios.IGNCR)
            a[1] |= termios.OPOST | termios.ONLCR  # LF written -> CR LF
            a[3] |= termios.ICANON | termios.ECHO | termios.ECHOE | termios.ECHOK
            a[3] &= ~(termios.ISIG | termios.ECHOCTL | termios.IEXTEN | termios.ECHONL)
            a[6][termios.VEOF] = b"\x00"  # ^D is just a character on a vty
            termios.tcsetattr(0, termios.TCSANOW, a)

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        while data:
            try:
                n = os.write(1, data)
            except OSError as e:
                raise Hangup(str(e)) from None
            data = data[n:]

    def _fill(self) -> None:
        r, _, _ = select.select([0], [], [], self.idle_timeout)
        if not r:
            raise Hangup("exec-timeout")
        try:
            chunk = os.read(0, 4096)
        except OSError as e:
            raise Hangup(str(e)) from None
        if not chunk:
            raise Hangup("EOF")
        self.buf += chunk

    def readline(self) -> str:
        while b"\n" not in self.buf and b"\r" not in self.buf:
            self._fill()
        m = re.search(rb"\r\n|\r|\n", self.buf)
        line, self.buf = self.buf[: m.start()], self.buf[m.end() :]
        # What a vty line ignores: NUL, other control characters.
        return bytes(c for c in line if c >= 0x20 or c == 0x09).decode("utf-8", "replace")

    def _set(self, echo: bool, canonical: bool) -> None:
        if not self.tty:
            return
        a = termios.tcgetattr(0)
        a[3] = (a[3] | termios.ECHO) if echo else (a[3] & ~termios.ECHO)
        a[3] = (a[3] | termios.ICANON) if canonical else (a[3] & ~termios.ICANON)
        if not canonical:
            a[6][termios.VMIN] = 1
            a[6][termios.VTIME] = 0
        termios.tcsetattr(0, termios.TCSANOW, a)

    def read_secret(self, prompt: str) -> str:
        """Echo off *before* the prompt is written, so nothing typed after it is echoed."""
        self._set(echo=False, canonical=True)
        try:
            self.write(prompt)
            value = self.readline()
        finally:
            try:
                self._set(echo=True, canonical=True)
            except termios.error:
                pass
        self.write("\n")  # the Return typed was not echoed
        return value

    def read_key(self) -> str:
        """One keystroke, not echoed (pager, [confirm])."""
        self._set(echo=False, canonical=False)
        try:
            while not self.buf:
                self._fill()
            key, self.buf = self.buf[:1], self.buf[1:]
        finally:
            try:
                self._set(echo=True, canonical=True)
            except termios.error:
                pass
        if key == b"\r" and self.buf[:1] in (b"\n", b"\x00"):
            self.buf = self.buf[1:]
        return key.decode("latin-1")


class EventLog:
    def __init__(self, path: str | None, secrets: list):
        self.path = path
        self.secrets = [s for s in secrets if s]

    def masked(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "********")
        # secrets typed in config commands (username x secret y, enable password y)
        return re.sub(r"(?i)\b(secret|password)(\s+\d)?\s+\S+", r"\1\2 ********", text)

    def __call__(self, event: str) -> None:
        if not self.path:
            return
        line = f"{time.strftime('%H:%M:%S')} pid={os.getpid()} {self.masked(event)}\n"
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------------------------
class Closed(Exception):
    """The device ends the connection (exit, logout, reload, too many login failures)."""


class CliError(Exception):
    def __init__(self, kind: str, pos: int = 0):
        super().__init__(kind)
        self.kind = kind  # invalid | incomplete | ambiguous
        self.pos = pos


def tokenize(line: str) -> list:
    return [(m.group(0), m.start()) for m in re.finditer(r"\S+", line)]


def match_keyword(word: str, keywords) -> str:
    w = word.lower()
    exact = [k for k in keywords if k.lower() == w]
    if exact:
        return exact[0]
    cands = [k for k in keywords if k.lower().startswith(w)]
    if len(cands) == 1:
        return cands[0]
    return "" if not cands else "\0ambiguous"


def normalise_interface(text: str) -> str | None:
    m = re.fullmatch(r"([A-Za-z]+)\s*(\d+)", text.strip())
    if not m:
        return None
    kind = match_keyword(m.group(1), INTERFACE_TYPES)
    if not kind or kind.startswith("\0"):
        return None
    return f"{kind}{int(m.group(2))}"


class Device:
    def __init__(self, line: Line, log: EventLog, cfg: dict):
        self.line = line
        self.log = log
        self.cfg = cfg
        self.hostname = cfg["hostname"]
        self.mode = "user"  # user | enable | config | config-if
        self.iface = ""
        self.interfaces = initial_interfaces()
        self.extra_config: list = []
        self.startup = show_running_config(self.hostname, self.interfaces, self.extra_config)
        self.length = 24
        self.width = 80
        self.deny = [d.strip().lower() for d in cfg["authz_deny"].split(",") if d.strip()]

    # -- output ----------------------------------------------------------------------------
    def out(self, text: str) -> None:
        self.line.write(text)

    def paged(self, text: str) -> None:
        """Write ``text`` (LF line ends) through the --More-- pager."""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if self.length == 0 or len(lines) < self.length:
            self.out("".join(f"{l}\n" for l in lines))
            return
        screen = self.length - 1
        i, budget = 0, screen
        while i < len(lines):
            self.out(f"{lines[i]}\n")
            i += 1
            budget -= 1
            if budget == 0 and i < len(lines):
                self.out(MORE)
                key = self.line.read_key()
                self.out(MORE_ERASE)
                if key == " ":
                    budget = screen
                elif key in ("\r", "\n"):
                    budget = 1
                else:
                    self.log(f"pager stopped by {key!r}")
                    return

    def prompt(self) -> str:
        return {
            "user": f"{self.hostname}>",
            "enable": f"{self.hostname}#",
            "config": f"{self.hostname}(config)#",
            "config-if": f"{self.hostname}(config-if)#",
        }[self.mode]

    # -- login -----------------------------------------------------------------------------
    def login(self) -> None:
        self.out(BANNER)
        if self.cfg["login"] == "none":
            self.log("login skipped (authenticated by the transport)")
            return
        self.out("\nUser Access Verification\n\n")
        if self.cfg["login"] == "line":
            for attempt in range(3):
                pw = self.line.read_secret("Password: ")
                if pw == self.cfg["password"]:
                    self.log("login ok (line password)")
                    return
                self.log(f"login failed (line password, attempt {attempt + 1})")
            self.out("% Bad passwords\n")
            raise Closed("bad passwords")
        for attempt in range(3):
            self.out("Username: ")
            user = self.line.readline()
            pw = self.line.read_secret("Password: ")
            if user == self.cfg["username"] and pw == self.cfg["password"]:
                self.log(f"login ok user={user!r}")
                return
            self.log(f"login failed user={user!r} attempt {attempt + 1}")
            self.out("% Login invalid\n\n")
        raise Closed("login failed 3 times")

    # -- exec loop -------------------------------------------------------------------------
    def run(self) -> None:
        self.login()
        self.out("\n")
        while True:
            prompt = self.prompt()
            self.out(prompt)
            text = self.line.readline()
            if any(s and s in text for s in self.log.secrets):
                self.log(f"SECRET-AT-PROMPT mode={self.mode} line={self.log.masked(text)!r}")
            elif text.strip():
                self.log(f"cmd mode={self.mode}: {text.strip()}")
            if not text.strip():
                continue
            try:
                self.dispatch(text)
            except CliError as e:
                if e.kind == "invalid":
                    self.out(" " * (len(prompt) + e.pos) + "^\n" + INVALID + "\n\n")
                elif e.kind == "incomplete":
                    self.out("% Incomplete command.\n\n")
                else:
                    self.out(f'% Ambiguous command:  "{text.strip()}"\n')

    def denied(self, words: list) -> bool:
        cmd = " ".join(words).lower()
        return any(cmd == d or cmd.startswith(d + " ") for d in self.deny)

    def dispatch(self, text: str) -> None:
        toks = tokenize(text)
        if self.mode in ("user", "enable"):
            self.exec_command(toks)
        else:
            self.config_command(text, toks)

    # -- exec commands ---------------------------------------------------------------------
    def exec_command(self, toks: list, priv: bool | None = None) -> None:
        priv = (self.mode != "user") if priv is None else priv
        user_kw = ["enable", "exit", "logout", "show", "terminal", "disable"]
        priv_kw = user_kw + ["configure", "copy", "reload", "write"]
        word, pos = toks[0]
        kw = self.keyword(word, pos, priv_kw if priv else user_kw)
        args = toks[1:]
        words = [kw] + [a for a, _ in args]
        if kw == "terminal" and args:
            sub = self.keyword(args[0][0], args[0][1], ["length", "width", "monitor"])
            words = [kw, sub] + [a for a, _ in args[1:]]
        if self.denied(words):
            self.out("Command authorization failed.\n\n")
            return
        getattr(self, f"cmd_{kw}")(args)

    def keyword(self, word: str, pos: int, keywords) -> str:
        kw = match_keyword(word, keywords)
        if not kw:
            raise CliError("invalid", pos)
        if kw.startswith("\0"):
            raise CliError("ambiguous", pos)
        return kw

    def no_more_args(self, args: list) -> None:
        if args:
            raise CliError("invalid", args[0][1])

    def cmd_enable(self, args):
        if args:
            level = args[0][0]
            if not level.isdigit() or not 0 <= int(level) <= 15:
                raise CliError("invalid", args[0][1])
            self.no_more_args(args[1:])
        if self.mode != "user":
            return
        if not self.cfg["enable_secret"]:
            self.out("% No password set\n")
            return
        pw = self.line.read_secret("Password: ")
        if pw == self.cfg["enable_secret"]:
            self.mode = "enable"
            self.log("enable ok")
        else:
            self.log("enable denied")
            self.out("% Access denied\n\n")

    def cmd_disable(self, args):
        self.no_more_args(args)
        self.mode = "user"

    def cmd_exit(self, args):
        self.no_more_args(args)
        raise Closed("exit")

    cmd_logout = cmd_exit

    def cmd_terminal(self, args):
        if not args:
            raise CliError("incomplete")
        sub = self.keyword(args[0][0], args[0][1], ["length", "width", "monitor"])
        if sub == "monitor":
            self.no_more_args(args[1:])
            return
        if len(args) < 2:
            raise CliError("incomplete")
        value, pos = args[1]
        lo, hi = 0, 512
        if not value.isdigit() or not lo <= int(value) <= hi:
            raise CliError("invalid", pos)
        self.no_more_args(args[2:])
        if sub == "length":
            self.length = int(value)
        else:
            self.width = int(value)

    def cmd_show(self, args):
        if not args:
            raise CliError("incomplete")
        kws = ["version", "clock", "ip"]
        if self.mode != "user":
            kws += ["running-config", "startup-config"]
        what = self.keyword(args[0][0], args[0][1], kws)
        rest = args[1:]
        if what == "ip":
            if not rest:
                raise CliError("incomplete")
            self.keyword(rest[0][0], rest[0][1], ["interface"])
            if len(rest) < 2:
                raise CliError("incomplete")
            self.keyword(rest[1][0], rest[1][1], ["brief"])
            self.no_more_args(rest[2:])
            self.paged(show_ip_interface_brief(self.interfaces))
            return
        self.no_more_args(rest)
        if what == "version":
            self.paged(show_version(self.hostname))
        elif what == "clock":
            self.out(show_clock())
        elif what == "running-config":
            self.paged(show_running_config(self.hostname, self.interfaces, self.extra_config))
        elif what == "startup-config":
            self.paged(self.startup.replace("Building configuration...\n\nCurrent", "Using 4242 out of 33554432 bytes\n!\n! Current", 1))

    def cmd_configure(self, args):
        if not args:
            self.out("Configuring from terminal, memory, or network [terminal]? ")
            answer = self.line.readline().strip()
            if answer and not "terminal".startswith(answer.lower()):
                self.out("?Must be \"terminal\", \"memory\" or \"network\"\n")
                return
        else:
            self.keyword(args[0][0], args[0][1], ["terminal"])
            self.no_more_args(args[1:])
        self.out("Enter configuration commands, one per line.  End with CNTL/Z.\n")
        self.mode = "config"

    def save(self) -> None:
        self.out("Building configuration...\n")
        time.sleep(0.3)  # NVRAM is slow
        self.startup = show_running_config(self.hostname, self.interfaces, self.extra_config)
        self.log("startup-config saved")
        self.out("[OK]\n")

    def cmd_write(self, args):
        if args:
            self.keyword(args[0][0], args[0][1], ["memory"])
            self.no_more_args(args[1:])
        self.save()

    def cmd_copy(self, args):
        if len(args) < 2:
            if args:
                self.keyword(args[0][0], args[0][1], ["running-config", "startup-config"])
            raise CliError("incomplete")
        self.keyword(args[0][0], args[0][1], ["running-config"])
        self.keyword(args[1][0], args[1][1], ["startup-config"])
        self.no_more_args(args[2:])
        self.out("Destination filename [startup-config]? ")
        answer = self.line.readline().strip()
        if answer not in ("", "startup-config"):
            self.out(f"%Error opening nvram:/{answer} (Permission denied)\n")
            return
        self.save()

    def cmd_reload(self, args):
        self.no_more_args(args)
        self.out("Proceed with reload? [confirm]")
        key = self.line.read_key()
        if key in ("\r", "\n", "y", "Y"):
            self.out("\n\n")
            self.log("reload confirmed")
            raise Closed("reload")
        self.out("\n")
        self.log("reload cancelled")

    # -- configuration mode ----------------------------------------------------------------
    def config_command(self, text: str, toks: list) -> None:
        word, pos = toks[0]
        kws = ["do", "end", "exit", "interface", "hostname", "no", "ip", "logging", "ntp", "service",
               "snmp-server", "username"]
        if self.mode == "config-if":
            kws += ["description", "shutdown", "negotiation"]
        kw = self.keyword(word, pos, kws)
        rest = text[toks[1][1]:].rstrip() if len(toks) > 1 else ""
        if kw == "do":
            if len(toks) < 2:
                raise CliError("incomplete")
            self.exec_command(toks[1:], priv=True)
            return
        if kw == "end":
            self.no_more_args(toks[1:])
            self.mode, self.iface = "enable", ""
            return
        if kw == "exit":
            self.no_more_args(toks[1:])
            self.mode, self.iface = ("config", "") if self.mode == "config-if" else ("enable", "")
            return
        if kw == "interface":
            if not rest:
                raise CliError("incomplete")
            name = normalise_interface(rest)
            if name is None or (name.startswith("GigabitEthernet") and name not in self.interfaces):
                raise CliError("invalid", toks[1][1])
            self.interfaces.setdefault(name, {"description": "", "ip": None, "shutdown": False})
            self.mode, self.iface = "config-if", name
            return
        if self.mode == "config-if":
            iface = self.interfaces[self.iface]
            if kw == "description":
                if not rest:
                    raise CliError("incomplete")
                iface["description"] = rest[:240]
                return
            if kw == "shutdown":
                self.no_more_args(toks[1:])
                iface["shutdown"] = True
                return
            if kw == "negotiation":
                return
            if kw == "ip":
                if len(toks) < 2:
                    raise CliError("incomplete")
                self.keyword(toks[1][0], toks[1][1], ["address"])
                if len(toks) < 4:
                    raise CliError("incomplete")
                for value, vpos in toks[2:4]:
                    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", value):
                        raise CliError("invalid", vpos)
                self.no_more_args(toks[4:])
                iface["ip"] = (toks[2][0], toks[3][0])
                return
            if kw == "no":
                if len(toks) < 2:
                    raise CliError("incomplete")
                sub = self.keyword(toks[1][0], toks[1][1], ["description", "shutdown", "ip"])
                if sub == "description":
                    iface["description"] = ""
                elif sub == "shutdown":
                    iface["shutdown"] = False
                else:
                    iface["ip"] = None
                return
            raise CliError("invalid", pos)
        if kw == "hostname":
            if len(toks) != 2:
                raise CliError("incomplete" if len(toks) < 2 else "invalid", toks[-1][1])
            self.hostname = toks[1][0]
            return
        if len(toks) < 2:
            raise CliError("incomplete")
        self.extra_config.append(f"{kw} {rest}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--login", choices=["local", "line", "none"], default=os.environ.get("TELNET_DEVICE_LOGIN", "local"))
    ap.add_argument("--hostname", default=os.environ.get("TELNET_DEVICE_HOSTNAME", "R1"))
    opts = ap.parse_args(argv)
    cfg = {
        "login": opts.login,
        "hostname": opts.hostname,
        "username": os.environ.get("TELNET_DEVICE_USERNAME", "netops"),
        "password": os.environ.get("TELNET_DEVICE_PASSWORD", ""),
        "enable_secret": os.environ.get("TELNET_DEVICE_ENABLE_SECRET", ""),
        "authz_deny": os.environ.get("TELNET_DEVICE_AUTHZ_DENY", ""),
    }
    log = EventLog(os.environ.get("TELNET_DEVICE_LOG"), [cfg["password"], cfg["enable_secret"]])
    if not cfg["password"] and cfg["login"] != "none":
        log("refusing to run without TELNET_DEVICE_PASSWORD")
        sys.stdout.write("% No password configured on this line\r\n")
        return 2
    line = Line(float(os.environ.get("TELNET_DEVICE_IDLE_TIMEOUT", "600")))
    device = Device(line, log, cfg)
    log(f"session start login={cfg['login']}")
    try:
        device.run()
    except Closed as e:
        log(f"session closed: {e}")
        # The last words (% Login invalid) must reach telnetd before the pty closes: wait until
        # the output queue is read (telnetd may close the socket as soon as the child exits).
        try:
            import termios

            termios.tcdrain(1)
        except (ImportError, OSError):
            pass
        time.sleep(0.2)
    except Hangup as e:
        log(f"session gone: {e}")
    except Exception as e:  # a bug here must show in the log, not hang the test
        log(f"session crashed: {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
