# Sourced by scripts/test: pinned_venv LINK CONSTRAINTS PIN... makes (or
# reuses) a virtualenv holding exactly PIN... under CONSTRAINTS, kept in a
# cache outside the checkout (${IMAGE_GATEWAY_CACHE:-~/.cache/image-gateway})
# so that a fresh clone, as CI makes, does not build it again; LINK (e.g.
# .glance-venv) is a symlink to it. The cache key is the pins and the
# constraints file's content: changing either builds a new one.
pinned_venv() {
  local link=$1 constraints=$2
  shift 2
  local key
  key=$( { printf '%s\n' "$@"; cat "$constraints"; } | sha256sum | cut -c1-16)
  local venv="${IMAGE_GATEWAY_CACHE:-$HOME/.cache/image-gateway}/venvs/${link#.}-$key"
  if [ ! -f "$venv/installed" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints" "$@"
    touch "$venv/installed"
  fi
  # A real directory from before the cache: replace it with the link.
  if [ -d "$link" ] && [ ! -L "$link" ]; then
    rm -rf "$link"
  fi
  ln -sfn "$venv" "$link"
}
