// Loaded on pages that show Jupyter widgets, after require.js and before the widget manager
// (embed-amd.js). `make book-assets` copies it next to the manager, into _vendor/html-manager/.
(function () {
  // 1. The manager finds its icon fonts relative to the URL that RequireJS gives its module;
  //    by default that URL is relative to the page, which is wrong for pages in subfolders
  //    such as chapters/. Point RequireJS at the folder this file is served from instead.
  var here = document.currentScript.src.replace(/[?#].*$/, "").replace(/[^\/]*$/, "");
  window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": here.replace(/\/$/, "") } });
  window.__jupyter_widgets_assets_path__ = here;

  // 2. ipywidgets' controls typeset their labels with the MathJax 2 call
  //    MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]), which throws under the book's
  //    MathJax 3. The widgets are drawn on the window's load event, after MathJax 3 has
  //    replaced its configuration object by itself: give it that call then, mapped onto
  //    MathJax 3's typesetPromise.
  function typeset(element) {
    var mj = window.MathJax;
    var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
    ready.then(function () {
      if (mj.typesetPromise) return mj.typesetPromise([element]);
    }).catch(function (err) { console.warn("MathJax could not typeset a widget label:", err); });
  }
  window.addEventListener("load", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub) return;
    mj.Hub = {
      Queue: function () {
        for (var i = 0; i < arguments.length; i++) {
          var job = arguments[i];
          if (Array.isArray(job) && job[0] === "Typeset" && job[2]) typeset(job[2]);
        }
      }
    };
  });
})();
