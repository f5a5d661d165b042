// The review page's behaviour, without a framework: the reviewer's name kept in localStorage, the topic tree's
// filter, and on a topic page the keyboard, the decisions sent as JSON to /review/decisions and the page redrawn
// from the topic's stored decisions. Everything is built with textContent: no server text becomes markup.
"use strict";

(() => {
  const base = document.body.dataset.base || "";
  const who = document.getElementById("who");
  if (who) {
    who.value = localStorage.getItem("edurank.who") || "";
    who.addEventListener("input", () => localStorage.setItem("edurank.who", who.value.trim()));
  }

  const filter = document.getElementById("filter");
  if (filter) {
    filter.addEventListener("input", () => filterTree(filter.value.trim().toLowerCase()));
  }

  /** Show the topics whose title holds `words`, with their ancestors opened; all of them when it is empty. */
  function filterTree(words) {
    const nodes = [...document.querySelectorAll(".tree li")];
    for (const node of nodes) node.hidden = words !== "";
    for (const details of document.querySelectorAll(".topics details")) {
      details.open = words === "" ? details.hasAttribute("data-open") : false;
    }
    if (words === "") {
      for (const channel of document.querySelectorAll(".topics .channel")) channel.hidden = false;
      document.getElementById("no-match").hidden = true;
      return;
    }
    let found = 0;
    for (const node of nodes) {
      if (!node.dataset.title.includes(words)) continue;
      found += 1;
      for (let up = node; up && up !== document.body; up = up.parentElement) {
        if (up.tagName === "LI") up.hidden = false;
        if (up.tagName === "DETAILS") up.open = true;
      }
    }
    for (const channel of document.querySelectorAll(".topics .channel")) {
      channel.hidden = !channel.querySelector(".tree li:not([hidden])");
    }
    document.getElementById("no-match").hidden = found > 0;
  }

  const list = document.getElementById("items");
  if (!list) return;
  const topicId = list.dataset.topicId;
  const versions = JSON.parse(list.dataset.versions || "null");  // the models that produced the list shown
  const items = [...list.querySelectorAll(".item")];
  const titles = JSON.parse(document.getElementById("titles").textContent);
  const status = document.getElementById("status");
  const help = document.getElementById("help");
  let focused = 0;

  function focus(index, scroll = true) {
    focused = Math.max(0, Math.min(items.length - 1, index));
    items.forEach((item, i) => item.setAttribute("tabindex", i === focused ? "0" : "-1"));
    items[focused].focus({ preventScroll: true });
    if (scroll) items[focused].scrollIntoView({ block: "nearest" });
  }

  function say(text, problem = false) {
    status.textContent = text;
    status.classList.toggle("problem", problem);
  }

  /** fetch with JSON both ways; the answer's body, or null after saying why it failed. */
  async function call(method, url, body) {
    let response;
    try {
      response = await fetch(url, {
        method, credentials: "same-origin",
        headers: { "Accept": "application/json", ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (error) {
      say(`The service did not answer: ${error.message}`, true);
      return null;
    }
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = answer && answer.detail && answer.detail[0];
      const why = detail ? `${detail.loc.join(".")}: ${detail.msg}` : response.statusText;
      say(`Refused (${response.status}) ${why}` + (response.status === 401 ? " (log in again)" : ""), true);
      return null;
    }
    return answer;
  }

  async function decide(item, verdict) {
    const probability = item.dataset.probability;
    const body = {
      topic_id: topicId, content_id: item.dataset.contentId, decision: verdict,
      rank: Number(item.dataset.rank), probability: probability === "" ? null : Number(probability),
      who: (who && who.value.trim()) || null, versions,
    };
    if (item.dataset.channelId) body.channel_id = item.dataset.channelId;
    if (await call("POST", `${base}/review/decisions`, body)) {
      say(`${verdict}: ${titleOf(item.dataset.contentId)}`);
      await refresh();
    }
  }

  async function undo(id) {
    if (!id) {
      say("This item has no decision to undo.");
      return;
    }
    const answer = await call("POST", `${base}/review/decisions/${id}/undo`,
                              { who: (who && who.value.trim()) || null });
    if (answer) {
      say(`Decision ${id} undone.`);
      await refresh();
    }
  }

  function titleOf(contentId) {
    return Object.prototype.hasOwnProperty.call(titles, contentId) ? titles[contentId] : contentId;
  }

  /** Redraw the items' decisions and the history from what the store now holds for the topic. */
  async function refresh() {
    const state = await call("GET", `${base}/review/decisions?topic_id=${encodeURIComponent(topicId)}`);
    if (!state) return;
    const current = new Map(state.current.map((d) => [d.content_id, d]));
    for (const item of items) {
      const decision = current.get(item.dataset.contentId);
      item.dataset.decision = decision ? decision.decision : "";
      item.dataset.decisionId = decision ? String(decision.id) : "";
      const badge = item.querySelector(".state");
      badge.className = `state ${decision ? decision.decision : "none"}`;
      badge.textContent = decision ? decision.decision : "undecided";
      item.querySelector("[data-undo]").disabled = !decision;
    }
    const body = document.getElementById("history");
    body.replaceChildren(...(state.history.length ? state.history.map(historyRow) : [emptyRow()]));
  }

  const when = (iso) => `${iso.slice(0, 19).replace("T", " ")} UTC`;
  const percent = (p) => (p === null ? "–" : `${(p * 100).toFixed(1)}%`);

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) {
      const span = document.createElement("span");
      span.className = className;
      span.textContent = text;
      td.append(span);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function historyRow(decision) {
    const row = document.createElement("tr");
    row.dataset.id = String(decision.id);
    if (decision.undone_at) row.className = "undone";
    const last = document.createElement("td");
    if (decision.undone_at) {
      last.textContent = `undone ${when(decision.undone_at)}` + (decision.undone_by ? ` by ${decision.undone_by}` : "");
    } else {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "quiet";
      button.dataset.undoId = String(decision.id);
      button.textContent = "Undo";
      last.append(button);
    }
    row.append(cell(when(decision.at)), cell(titleOf(decision.content_id)),
               cell(decision.decision, `state ${decision.decision}`), cell(decision.who || "–"),
               cell(decision.rank === null ? "–" : String(decision.rank)), cell(percent(decision.probability)), last);
    return row;
  }

  function emptyRow() {
    const row = document.createElement("tr");
    row.className = "empty";
    const td = cell("No decisions yet.");
    td.colSpan = 7;
    row.append(td);
    return row;
  }

  list.addEventListener("click", (event) => {
    const item = event.target.closest(".item");
    if (!item) return;
    focus(items.indexOf(item), false);
    const button = event.target.closest("button");
    if (button && button.dataset.verdict) decide(item, button.dataset.verdict);
    else if (button && button.hasAttribute("data-undo")) undo(item.dataset.decisionId);
  });

  document.getElementById("history").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-undo-id]");
    if (button) undo(button.dataset.undoId);
  });

  const VERDICTS = { a: "accepted", r: "rejected", f: "flagged" };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || help.open) return;
    if (event.target.closest && event.target.closest("input, textarea, select")) return;  // typing a name
    const item = items[focused];
    if (event.key === "j" || event.key === "ArrowDown") focus(focused + 1);
    else if (event.key === "k" || event.key === "ArrowUp") focus(focused - 1);
    else if (VERDICTS[event.key]) decide(item, VERDICTS[event.key]);
    else if (event.key === "u") undo(item.dataset.decisionId);
    else if (event.key === "?") help.showModal();
    else return;
    event.preventDefault();
  });

  focus(0, false);
})();
