"use strict";
// apcheck trace explorer: reads the report embedded in #apcheck-data; no network, no libraries.
(function () {
  const data = JSON.parse(document.getElementById("apcheck-data").textContent);
  const report = data.report;
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const kid of kids) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return e;
  };
  const root = document.getElementById("app");

  root.append(el("h1", {}, "apcheck ", el("code", {}, report.spec), " — design ",
    el("code", {}, report.design), " — ", el("span", { class: report.result, id: "overall" }, report.result)));

  // ---------------------------------------------------------------- verdicts
  const traces = [];  // distinct traces (lock-order's reachable cycle shares the deadlock's)
  const vt = el("table", { id: "verdicts" }, el("tr", {}, el("th", {}, "property"), el("th", {}, "status"),
    el("th", {}, "detail"), el("th", {}, "trace")));
  for (const p of report.properties) {
    let link = "";
    if (p.trace) {
      let k = traces.findIndex(t => JSON.stringify(t.trace.actions) === JSON.stringify(p.trace.actions));
      if (k < 0) { k = traces.length; traces.push({ name: p.name, detail: p.detail, trace: p.trace }); }
      link = el("a", { href: "#trace-" + k }, p.trace.length + " steps");
    }
    vt.append(el("tr", {}, el("td", {}, p.name), el("td", { class: p.status }, p.status),
      el("td", {}, p.detail), el("td", {}, link)));
  }
  root.append(vt);
  const s = report.stats;
  root.append(el("p", { id: "stats" }, `${s.states} states, ${s.transitions} transitions, max depth ` +
    `${s.max_depth}, ${s.complete ? "complete" : "BOUNDED by " + s.limit} search (${s.strategy}, ${s.store} store)`));

  // ---------------------------------------------------------------- one explorer per trace
  traces.forEach((t, k) => root.append(explorer(t, k)));

  if (data.lockdep.length) {
    root.append(el("h2", {}, "lock-order cycles"));
    for (const text of data.lockdep) root.append(el("pre", { class: "lockdep" }, text));
  }

  function explorer(t, k) {
    const tr = Object.assign({ initial: [], blocked: [], waits: [] }, t.trace);  // older reports lack some keys
    const threads = tr.threads.slice();
    for (const st of tr.steps) if (!threads.includes(st.thread)) threads.push(st.thread);
    const sec = el("section", { id: "trace-" + k, class: "trace" });
    sec.append(el("h2", {}, `${t.name}: ${t.detail}`));

    // the full state before each step: initial values, then each step's changes applied in order
    const fields = tr.initial.map(x => x.field);
    const states = [new Map(tr.initial.map(x => [x.field, x.value]))];
    const held = [new Map(threads.map(th => [th, []]))];
    for (const st of tr.steps) {
      const next = new Map(states[states.length - 1]);
      for (const c of st.changes) { if (!next.has(c.field)) fields.push(c.field); next.set(c.field, c.after); }
      states.push(next);
      const h = new Map(held[held.length - 1]);
      h.set(st.thread, st.locks_held);
      held.push(h);
    }
    let cur = 0;  // 0: the initial state; k: after step k

    const pos = el("span", { class: "position" });
    const button = (label, title, fn) => {
      const b = el("button", { type: "button", title: title, "data-action": title }, label);
      b.addEventListener("click", () => { fn(); render(); });
      return b;
    };
    const filters = el("span", { class: "filters" }, "threads: ");
    const shown = new Set(threads);
    threads.forEach(th => {
      const box = el("input", { type: "checkbox", "data-thread": th });
      box.checked = true;
      box.addEventListener("change", () => { box.checked ? shown.add(th) : shown.delete(th); render(); });
      filters.append(el("label", {}, box, th), " ");
    });
    sec.append(el("div", { class: "controls" },
      button("«", "first", () => { cur = 0; }),
      button("◀", "back", () => { cur = Math.max(0, cur - 1); }),
      button("▶", "forward", () => { cur = Math.min(tr.steps.length, cur + 1); }),
      button("»", "last", () => { cur = tr.steps.length; }),
      pos, filters));

    const lane = el("table", { class: "lane" });
    const head = el("tr", {}, el("th", {}, "#"));
    const cols = threads.map(th => { const c = el("th", { "data-thread": th }, th); head.append(c); return c; });
    lane.append(head);
    const rows = tr.steps.map((st, i) => {
      const row = el("tr", { "data-step": String(st.index) });
      const num = el("td", { class: "step" }, st.index);
      num.addEventListener("click", () => { cur = i + 1; render(); });
      row.append(num);
      for (const th of threads) {
        const cell = el("td", { "data-thread": th });
        if (th === st.thread) {
          if (st.operation) cell.append(el("div", { class: "op" }, "(" + st.operation + ")"));
          cell.append(el("div", {}, st.function ? `${st.function}: ${st.action}` : st.action));
          if (st.note) cell.append(el("div", { class: "note" }, st.note));
        }
        row.append(cell);
      }
      lane.append(row);
      return row;
    });

    const stateTable = el("table", { class: "state" });
    const locksTable = el("table", { class: "locks" });
    sec.append(el("div", { class: "panes" }, lane,
      el("div", {}, el("h3", {}, "state"), stateTable), el("div", {}, el("h3", {}, "locks held"), locksTable)));
    const fin = [tr.final, ...tr.blocked.map(b => `${b.thread} blocked in ${b.function}: ${b.call}` +
      (b.holder ? `, held by ${b.holder}` : "")), ...(tr.blocked.length ? [] : tr.waits)].filter(x => x);
    if (fin.length) sec.append(el("pre", { class: "final" }, fin.join("\n")));

    function render() {
      pos.textContent = `step ${cur} / ${tr.steps.length}`;
      rows.forEach((row, i) => {
        row.className = i + 1 === cur ? "current" : i + 1 > cur ? "future" : "";
      });
      threads.forEach((th, j) => {
        const hide = !shown.has(th);
        cols[j].classList.toggle("hidden", hide);
        rows.forEach(row => row.children[j + 1].classList.toggle("hidden", hide));
        rows.forEach((row, i) => {
          if (tr.steps[i].thread === th) row.classList.toggle("hidden", hide);
        });
      });
      const changed = new Set(cur ? tr.steps[cur - 1].changes.map(c => c.field) : []);
      stateTable.replaceChildren(el("tr", {}, el("th", {}, "field"), el("th", {}, "value")));
      for (const f of fields) {
        stateTable.append(el("tr", { class: changed.has(f) ? "changed" : "", "data-field": f },
          el("td", { class: "mono" }, f), el("td", { class: "mono" }, states[cur].get(f) ?? "")));
      }
      locksTable.replaceChildren(el("tr", {}, el("th", {}, "thread"), el("th", {}, "locks")));
      for (const th of threads) {
        if (shown.has(th)) locksTable.append(el("tr", { "data-thread": th }, el("td", {}, th),
          el("td", { class: "mono" }, held[cur].get(th).join(", "))));
      }
    }
    sec.addEventListener("keydown", e => {
      if (e.key === "ArrowRight") cur = Math.min(tr.steps.length, cur + 1);
      else if (e.key === "ArrowLeft") cur = Math.max(0, cur - 1);
      else return;
      render();
    });
    sec.tabIndex = 0;
    render();
    return sec;
  }
})();
