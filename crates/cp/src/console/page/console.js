// The cluster console: polls api/cluster and renders it. Every value from the server
// goes into the page through textContent (entity names and DP hostnames are user
// input); class names come only from the literals below.
"use strict";

(function () {
  const FALLBACK_REFRESH_MS = 2000;

  function byId(id) {
    return document.getElementById(id);
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // "ok" | "warn" | "bad" | "info": the only classes a badge gets.
  function badge(text, tone) {
    return el("span", text, "badge " + tone);
  }

  function cell(value, cls) {
    const td = document.createElement("td");
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = value === null || value === undefined ? "—" : String(value);
    if (cls) td.className = cls;
    return td;
  }

  function fill(table, rows) {
    table.tBodies[0].replaceChildren(...rows);
  }

  function tr(cells) {
    const row = document.createElement("tr");
    for (const c of cells) row.appendChild(c);
    return row;
  }

  function ago(now, then) {
    const s = Math.max(0, now - then);
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function iso(unix) {
    return new Date(unix * 1000).toISOString().replace(".000Z", "Z");
  }

  function renderHeader(d) {
    const n = d.node;
    byId("node").textContent =
      "cp" + n.raft_id + " · " + n.hostname + " · " + n.role + " · tidegate " + n.version;
    byId("updated").textContent = "updated " + iso(d.now) + " (every " + d.refresh_ms / 1000 + " s)";
  }

  function renderRaft(d) {
    const r = d.raft;
    const p = byId("raft");
    p.replaceChildren();
    p.appendChild(document.createTextNode("This node (cp" + d.node.raft_id + ") is "));
    p.appendChild(badge(r.state, r.state === "leader" || r.state === "follower" ? "ok" : "warn"));
    p.appendChild(
      document.createTextNode(
        " in term " + r.term +
          "; leader: " + (r.leader === null ? "none" : "cp" + r.leader) +
          "; last log index " + (r.last_log_index ?? "—") +
          ", applied " + (r.last_applied ?? "—") + "."
      )
    );
    if (r.millis_since_quorum_ack !== null) {
      p.appendChild(document.createTextNode(" Quorum acknowledged " + r.millis_since_quorum_ack + " ms ago."));
    }
    if (d.node.health !== null) {
      p.appendChild(document.createTextNode(" "));
      p.appendChild(badge("unhealthy", "bad"));
      p.appendChild(document.createTextNode(" " + d.node.health));
    }
  }

  function cpHealth(d, m, leads) {
    if (m.this_node) {
      return d.node.health === null ? badge("healthy", "ok") : badge("unhealthy", "bad");
    }
    if (!leads) return el("span", "known to the leader", "muted");
    if (m.reachable === true) return badge("replicating", "ok");
    return badge("unreachable", "bad");
  }

  function renderControlPlanes(d) {
    const r = d.raft;
    const leads = r.state === "leader";
    const rows = d.control_planes.map(function (m) {
      let role = m.leader ? "leader" : m.kind === "learner" ? "learner" : "follower";
      if (m.this_node) role = r.state;
      const name = el("span", "cp" + m.id);
      if (m.this_node) name.appendChild(el("span", " (this node)", "muted"));
      const term = m.this_node || m.leader ? r.term : null;
      const lag = m.lag === null ? null : m.lag;
      return tr([
        cell(name),
        cell(m.address, "mono"),
        cell(badge(role, role === "leader" ? "info" : role === "candidate" ? "warn" : "ok")),
        cell(term, "num"),
        cell(cpHealth(d, m, leads)),
        cell(m.matched_index, "num"),
        cell(lag === null ? null : badge(String(lag), lag === 0 ? "ok" : "warn"), "num"),
      ]);
    });
    fill(byId("cps"), rows);
    byId("cps-note").textContent = leads
      ? "Replication progress as this leader sees it: lag is its last log index minus the entry each member matched."
      : "Only the leader tracks replication" +
        (r.leader === null ? "; there is no leader right now." : ": open the console of cp" + r.leader + " for it.");
  }

  function syncTone(status) {
    return status === "normal" ? "ok" : "warn";
  }

  function renderDataPlanes(d) {
    const dp = d.data_planes;
    const cpHash = d.config.hash;
    byId("dp-summary").textContent =
      dp.total + " data plane" + (dp.total === 1 ? "" : "s") + ", " + dp.connected + " connected, " +
      dp.in_sync + " holding this control plane's config (version " + d.config.version + ", hash " + cpHash + ").";
    const rows = dp.rows.map(function (r) {
      const hash = el("span", r.config_hash, "mono");
      const hashCell = cell(r.config_hash === null ? null : hash);
      if (r.config_hash !== null && r.config_hash !== cpHash) hashCell.appendChild(badge("differs", "warn"));
      const seen = cell(ago(d.now, r.last_seen));
      seen.title = iso(r.last_seen);
      return tr([
        cell(r.id, "mono"),
        cell(r.hostname),
        cell(r.ip, "mono"),
        cell(r.version),
        hashCell,
        cell(badge(r.sync_status, syncTone(r.sync_status))),
        cell(r.connected ? badge("yes", "ok") : badge("no", "bad")),
        seen,
        cell(r.lag === null ? null : badge(String(r.lag), r.lag === 0 ? "ok" : "warn"), "num"),
        cell(r.control_plane === null ? null : "cp" + r.control_plane),
      ]);
    });
    fill(byId("dps"), rows);
    let note = "";
    if (dp.total === 0) note = "No data plane has connected to this cluster yet.";
    else if (dp.total > dp.rows.length) note = "Showing the first " + dp.rows.length + " by node id.";
    byId("dps-note").textContent = note;
  }

  function renderEntities(d) {
    byId("config").textContent = "Config version " + d.config.version + ", hash " + d.config.hash + ".";
    const total = d.entities.reduce(function (n, e) { return n + e.count; }, 0);
    const rows = d.entities.map(function (e) {
      return tr([cell(e.kind), cell(e.count, "num")]);
    });
    rows.push(tr([cell(el("strong", "total")), cell(el("strong", total), "num")]));
    fill(byId("entities"), rows);
  }

  function renderChanges(d) {
    const rows = d.recent_changes.map(function (c) {
      return tr([
        cell(c.version, "num"),
        cell(badge(c.op, c.op === "delete" ? "bad" : "info")),
        cell(c.kind),
        cell(c.name),
        cell(c.id, "mono"),
      ]);
    });
    fill(byId("changes"), rows);
    byId("changes-note").textContent = rows.length === 0
      ? "No changes since this node started from its latest snapshot."
      : "";
  }

  function render(d) {
    renderHeader(d);
    renderRaft(d);
    renderControlPlanes(d);
    renderDataPlanes(d);
    renderEntities(d);
    renderChanges(d);
  }

  async function refresh() {
    let next = FALLBACK_REFRESH_MS;
    const banner = byId("error");
    try {
      const resp = await fetch("api/cluster", { cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const data = await resp.json();
      render(data);
      next = data.refresh_ms || FALLBACK_REFRESH_MS;
      banner.hidden = true;
      document.body.dataset.state = "live";
    } catch (e) {
      banner.textContent = "Cannot read this control plane (" + e.message + "); retrying.";
      banner.hidden = false;
      document.body.dataset.state = "error";
    }
    // Scheduled after each answer, so a slow node never has polls piling up.
    setTimeout(refresh, next);
  }

  refresh();
})();
