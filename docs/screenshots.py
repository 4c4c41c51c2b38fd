"""Make the README's pictures: the dashboard and `status --watch`, from a real daemon's database.

Run from the repository root: `python3 docs/screenshots.py` (needs the test extras, chromium and
the suite's database server; writes docs/dashboard.png and docs/watch.png).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pymongo import MongoClient
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.mongo import reports
from jobs.rules.quiet_hours import Window
from jobs.simulator.server import FlowrouteSimulator
from scheduler.surfaces import watch
from tests.conftest import Cli, cli_env
from tests.e2e.observe import free_port, get, token_proxy, wait_for
from tests.processes import stop
from tests.servers.mongo_server import launch

DOCS = Path(__file__).resolve().parent
TOKEN = "screenshot-token"


def chromium(*args: str) -> None:
    exe = shutil.which("chromium") or "chromium"
    profile = tempfile.mkdtemp(prefix="chromium-")
    subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={profile}", *args],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="sms-outbox-shots-"))
    server = launch(work / "db")
    sim = FlowrouteSimulator("k", "s", rate_per_second=None).start()
    try:
        env = cli_env(server.uri, "clinic", sim.url, work / "keys")
        env.update(SMS_OUTBOX_FLOWROUTE__ACCESS_KEY="k", SMS_OUTBOX_FLOWROUTE__SECRET_KEY="s")
        cli = Cli(env, work)
        ok(cli("senders", "grant", "front-desk", "12065550100"))
        ok(cli("senders", "grant", "alerts", "13125550177"))
        people = [f"1206555{n:04d}" for n in range(1000, 1240)]
        ok(cli("recipients", "add", *people, "--verified"))
        ok(cli("recipients", "add", "12065559998", "12065559999"))
        ok(cli("broadcast", "--user", "alerts", "--body", "Road works on 5th Ave"))
        sim.fail_next(400, 2, code=1110, detail="opted out")
        ok(cli("run", "--until-idle"))
        campaign = ok(cli("broadcast", "--user", "front-desk", "--body", "Flu shots this week"))
        cli.env["SMS_OUTBOX_FLOWROUTE__RATE_PER_SECOND"] = "5"
        daemon = cli.popen("run")
        sim.fail_next(503, 1)
        wait_for(lambda: len(sim.messages()) >= 300, "part of the second campaign", 180)
        stop(daemon)

        port = free_port()
        cli.env["SMS_OUTBOX_DASHBOARD__TOKEN"] = TOKEN
        dashboard = cli.popen("dashboard", "--listen", f"127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}/"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        wait_for(lambda: get(url, auth)[0] == 200, "the dashboard")
        with token_proxy(TOKEN) as through_proxy:
            shot = f"--screenshot={DOCS / 'dashboard.png'}"
            chromium(*through_proxy, shot, "--window-size=1360,480", url)
        stop(dashboard)

        db = MongoClient(server.uri, tz_aware=True)["clinic"]
        now = datetime.now(UTC)
        view = watch.summary(reports.campaign(db, campaign, now), now, 5, Window())
        console = Console(record=True, width=92, force_terminal=True, color_system="truecolor")
        console.print(f"$ sms-outbox status --campaign {campaign} --watch")
        console.print(watch.render(view))
        svg = work / "watch.svg"
        console.save_svg(str(svg), title="sms-outbox status --watch")
        width, height = (
            int(float(v))
            for v in re.findall(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg.read_text())[0]
        )
        chromium(f"--screenshot={DOCS / 'watch.png'}", f"--window-size={width},{height}",
                 svg.as_uri())  # fmt: skip
    finally:
        sim.stop()
        server.close()
    print(f"wrote {DOCS / 'dashboard.png'} and {DOCS / 'watch.png'}")


if __name__ == "__main__":
    main()
