#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (fuzz/seeds/<target>/, committed; a few files each).

    python3 fuzz/make_seeds.py

Each seed is a real example of what the target parses: requests as clients send them, Telnet
negotiations as IOS and BusyBox telnetd open them, command output as the platforms print it
(pagers, ANSI colour, context lines). libFuzzer grows its working corpus (fuzz/corpus/, not
committed) from these. The first bytes of some inputs are parameters; see each target's header.
"""

import json
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent / "seeds"

IAC, DONT, DO, WONT, WILL, SB, SE, NOP = 255, 254, 253, 252, 251, 250, 240, 241
ECHO, SGA, TTYPE, NAWS, LINEMODE, NEW_ENVIRON = 1, 3, 24, 31, 34, 39


def b(*parts):
    out = bytearray()
    for p in parts:
        if isinstance(p, int):
            out.append(p)
        elif isinstance(p, str):
            out += p.encode()
        else:
            out += p
    return bytes(out)


def http_head():
    # First byte: the read size (1 + byte % 64).
    return {
        "post_json": b(7, "POST /session HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                       "Content-Type: application/json\r\nX-API-Token: t0k\r\n"
                       "Content-Length: 2\r\n\r\n{}"),
        "chunked_pipelined": b(3, "POST /session/abc/exec HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                               "\r\n4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\nX-Trailer: 1\r\n\r\n"
                               "GET /health HTTP/1.1\r\n\r\n"),
        "http10_bare_lf": b(1, "GET /health HTTP/1.0\n\n"),
        "expect_close": b(16, "DELETE /session/x HTTP/1.1\r\nConnection: close\r\n"
                          "Expect: 100-continue\r\n\r\n"),
        "chunked_bare_lf": b(5, "PUT /x?y=1 HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n"),
    }


def request_body():
    j = lambda v: json.dumps(v).encode()  # noqa: E731
    return {
        "open_ssh": j({"host": "10.0.0.1", "username": "admin", "password": "pw",
                       "device_type": "cisco_ios", "port": 22, "timeout": 30, "secret": "en",
                       "session_timeout": 600, "keepalive_interval": 60, "enable_level": 15,
                       "legacy_algorithms": "yes",
                       "kex": "diffie-hellman-group14-sha1,ecdh-sha2-nistp256",
                       "ciphers": ["aes128-ctr"], "host_key_policy": "accept-new",
                       "key_file": "r1.key", "passphrase": "x"}),
        "open_telnet": j({"host": "[::1]", "username": "u", "password": "p",
                          "device_type": "cisco_ios_telnet", "port": "2323", "timeout": "2.5"}),
        "exec_plain": j({"commands": ["show version", "show clock"], "timeout": 60,
                         "stop_on_error": True}),
        "exec_interactive": j({"commands": [
            {"cmd": "copy run start", "answer": "\\[confirm\\]", "send_newlines": 2},
            {"cmd": "reload", "expect": "confirm", "read_timeout": 5,
             "interactions": [{"expect": "Password:", "send": "x", "hidden": True,
                               "newline": False}]}]}),
        "exec_config": j({"config": ["interface Gi0/1", "description uplink"], "save": True}),
        "wrong_types": b'{"commands":"show ver","timeout":-1e400,"host":null,"port":1.5}',
    }


def telnet_codec():
    # First two bytes: the read-size seed.
    return {
        "ios_open": b(1, 2, IAC, WILL, ECHO, IAC, WILL, SGA, IAC, DO, TTYPE, IAC, DO, NAWS,
                      "\r\n\r\nUser Access Verification\r\n\r\nUsername: "),
        "ttype_and_escapes": b(3, 4, IAC, DO, TTYPE, IAC, SB, TTYPE, 1, IAC, SE,
                               IAC, WILL, LINEMODE, IAC, DO, NEW_ENVIRON,
                               "a", IAC, IAC, "b\r\0c", IAC, NOP, "d\r\n",
                               IAC, SB, TTYPE, IAC, IAC, "x", IAC, SE, "R1#"),
        "busybox_login": b(9, 9, IAC, DO, ECHO, IAC, DO, NAWS, IAC, WILL, ECHO, IAC, WILL, SGA,
                           "\r\nlocalhost login: "),
        "looping_peer": b(0, 1, *([IAC, DO, LINEMODE] * 12), IAC, WONT, ECHO, IAC, DONT, NAWS),
        "long_sb": b(5, 5, IAC, SB, 200, bytes([7] * 300), IAC, SE, "z"),
    }


def matcher():
    # First bytes: platform (index into the target's list), read-size seed, output cap
    # (high bit: 1 MiB, else 8 x the byte).
    bs = b"\x08" * 10
    return {
        "ios_pager": b(0, 7, 0x80, "show running-config\r\nBuilding configuration...\r\n\r\n"
                       "hostname R1\r\n --More-- ", bs, " " * 10, bs,
                       "interface Gi0/1\r\n end\r\n\r\nR1#"),
        "ios_truncated": b(0, 3, 4, "show running-config\r\n% Invalid input detected at '^' "
                           "marker.\r\n\r\nR1(config-if)#"),
        "junos_context": b(1, 9, 0x80, "show running-config\r\n---(more 50%)---\r"
                           "                \rset system host-name R1\r\n\r\n{master:0}\r\n"
                           "admin@R1> "),
        "arista_ansi": b(2, 1, 0x80, "\x1b[1;32mshow running-config\x1b[0m\r\n"
                         "\x1b]0;title\x07! device: R1\r\nR1(config-if-Et1)#"),
        "xr_prompt": b(3, 2, 0x80, "show running-config\r\r\nBuilding\r\nRP/0/RSP0/CPU0:R1#"),
        "huawei_pager": b(4, 5, 0x80, "show running-config\r\n  ---- More ----\x1b[42D"
                          + " " * 42 + "\x1b[42D sysname R1\r\n<R1>"),
        "nokia_pager": b(6, 11, 0x80, "show running-config\r\nPress any key to continue (Q to quit)"
                         "\r\n*A:admin@R1# "),
        "linux": b(7, 13, 0x80, "show running-config\r\nbash: show: command not found\r\n"
                   "[admin@R1 ~]$ "),
    }


def driver():
    # First bytes: platform, options (bit 0 login, 1 enable secret, 2 enable level, 3 tiny
    # output cap, 4-5 command form, 6 any order, 7 CLI keepalive), read-size seed; then what
    # the device prints: the greeting, then one segment per write it receives, split by 0xFF.
    seg = lambda *parts: b"\xff".join(b(p) for p in parts)  # noqa: E731
    ios_on_open = ("terminal length 0\r\nR1#", "terminal width 511\r\nR1#")
    erase = "\x08" * 10 + " " * 10 + "\x08" * 10
    return {
        "ios_pager": b(0, 0x80, 7, seg(
            "R1#", "\r\nR1#", *ios_on_open,
            "show running-config\r\nBuilding configuration...\r\n --More-- ",
            erase + " interface Gi0/1\r\nend\r\n\r\nR1#",
            "\r\nR1#", "show clock\r\n*10:00:00 UTC\r\nR1#", "exit\r\n")),
        "ios_telnet_login_enable_copy": b(0, 0x13, 3, seg(
            "\r\nUser Access Verification\r\n\r\nUsername: ", "admin\r\nPassword: ",
            "\r\nR1>", "\r\nR1>", "enable\r\nPassword: ", "\r\nR1#", *ios_on_open,
            "copy running-config startup-config\r\nDestination filename [startup-config]? ",
            "\r\nBuilding configuration...\r\n[OK]\r\nR1#", "\r\nR1#")),
        "ios_reload_questions": b(0, 0x60, 9, seg(
            "R1#", "\r\nR1#", *ios_on_open,
            "reload\r\nPassword: ", "\r\nProceed with reload? [confirm]", "y\r\nR1#")),
        "junos_context": b(1, 0x30, 5, seg(
            "admin@R1> ", "\r\n\r\nadmin@R1> ",
            "set cli complete-on-space off \r\nDisabling complete-on-space\r\n\r\nadmin@R1> ",
            "set cli screen-length 0 \r\nScreen length set to 0\r\n\r\nadmin@R1> ",
            "set cli screen-width 511 \r\nScreen width set to 511\r\n\r\nadmin@R1> ",
            "show running-config\r\n---(more 50%)---",
            "\r                \rSuccess rate is 100 percent\r\n\r\n{master:0}\r\nadmin@R1> ")),
        "huawei": b(4, 0, 1, seg(
            "\r\n<R1>", "\r\n<R1>", "screen-length 0 temporary\r\nInfo: ok.\r\n<R1>",
            "show running-config\r\n  ---- More ----",
            "\x1b[42D" + " " * 42 + "\x1b[42D sysname R1\r\n<R1>")),
    }


def main():
    for name, seeds in [("http_head", http_head()), ("request_body", request_body()),
                        ("telnet_codec", telnet_codec()), ("matcher", matcher()),
                        ("driver", driver())]:
        d = ROOT / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for file, data in seeds.items():
            (d / file).write_bytes(data)
        print(f"{d}: {len(seeds)} seeds, {sum(len(v) for v in seeds.values())} bytes")


if __name__ == "__main__":
    main()
