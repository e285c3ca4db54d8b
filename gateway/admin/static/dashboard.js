// Live updates without a reload: every few seconds, re-fetch each
// [data-live] region of this page as an HTML fragment (?partial=<name>)
// and swap it in when it changed. The search box filters as you type.
(() => {
  "use strict";
  const every = Math.max(250, Number(document.body.dataset.refresh || "1") * 1000);
  const regions = [...document.querySelectorAll("[data-live]")];
  const live = document.getElementById("live");
  const liveText = document.getElementById("live-text");
  const last = new Map();
  let busy = false;

  function regionUrl(name) {
    const url = new URL(window.location.href);
    url.searchParams.set("partial", name);
    return url;
  }

  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      for (const region of regions) {
        const response = await fetch(regionUrl(region.dataset.live), { credentials: "same-origin" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const html = await response.text();
        if (last.get(region) !== html) {
          region.innerHTML = html;
          last.set(region, html);
        }
      }
      live.classList.remove("stale");
      liveText.textContent = `live · ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      live.classList.add("stale");
      liveText.textContent = `not updating (${error.message})`;
    } finally {
      busy = false;
    }
  }

  const search = document.querySelector("form.search input[name=q]");
  if (search) {
    let timer;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const url = new URL(window.location.href);
        if (search.value) url.searchParams.set("q", search.value);
        else url.searchParams.delete("q");
        window.history.replaceState(null, "", url);
        refresh();
      }, 200);
    });
  }

  if (regions.length) setInterval(refresh, every);
})();
