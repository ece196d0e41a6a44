"""Work around a sphinx-thebe bug seen with jupyter-book 1.0.4 and Sphinx 7: sphinx-thebe adds its
config script during ``env-before-read-docs``, after the HTML builder exists, so Sphinx registers it both
with the application and with the builder and writes it twice into every page. The browser then throws
"Identifier 'THEBE_JS_URL' has already been declared". We keep only the application's copy. The book
does not use thebe itself.
"""

import sphinx_thebe


def setup(app):
    def once(app, env, docnames):
        builder_files = getattr(app.builder, "script_files", None)
        before = list(builder_files) if builder_files is not None else None
        sphinx_thebe.init_thebe_core(app, env, docnames)
        if before is not None:
            builder_files[:] = before

    for listener in list(app.events.listeners.get("env-before-read-docs", [])):
        if listener.handler is sphinx_thebe.init_thebe_core:
            app.disconnect(listener.id)
    app.connect("env-before-read-docs", once)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
