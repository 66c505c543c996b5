// Installed as /etc/firefox-esr/cubicle.js by the Dockerfile: Debian's Firefox ESR reads every
// file there as default preferences. policies.json cannot set this one.
//
// Containers usually run without unprivileged user namespaces (Docker's default seccomp
// profile blocks them), so Firefox would open every window under a bar saying its sandbox
// offers less protection. The container is the sandbox here; the bar would only cover the page.
pref("security.sandbox.warn_unprivileged_namespaces", false);
