#!/usr/bin/python
# Copyright: the optimize maintainers. Apache-2.0.
"""Read a node's release folder in one call: its releases, the releases the `current` and
`previous` links name, and the bundle.json of one release."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: optimize_release_info
short_description: Read the releases and links of an optimize release folder
description:
  - Lists the releases under O(root)/releases (folders named by an integer version) and reads
    which releases the O(root)/current and O(root)/previous links name.
  - Reads the bundle.json of release O(version), so a rollout can tell whether that release
    already holds the bundle it brings.
  - Reads only; never changes anything.
options:
  root:
    description: The node's release folder (optimize_release_root).
    type: path
    required: true
  version:
    description: The release whose bundle.json to read; 0 reads none.
    type: int
    default: 0
author:
  - optimize maintainers
"""

EXAMPLES = r"""
- name: Read the node's releases
  optimize_release_info:
    root: /opt/optimize/models
    version: 20250101120000
  register: releases
"""

RETURN = r"""
releases:
  description: The release versions, oldest first.
  returned: always
  type: list
  elements: int
current:
  description: The release the current link names; 0 when there is none.
  returned: always
  type: int
previous:
  description: The release the previous link names; 0 when there is none.
  returned: always
  type: int
manifest:
  description: The bundle.json of release O(version), parsed; empty when it has none or cannot be read.
  returned: always
  type: dict
others:
  description: The other entries of O(root)/releases (e.g. a bundle folder an interrupted unpack left).
  returned: always
  type: list
  elements: str
"""

# Ansible's module layout: the documentation comes before the imports
import json  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def linked_release(path):
    """The version a link names (its target's last component), 0 when the path is no link to a
    release."""
    if not os.path.islink(path):
        return 0
    name = os.path.basename(os.path.normpath(os.readlink(path)))
    return int(name) if name.isdigit() else 0


def main():
    module = AnsibleModule(
        argument_spec={"root": {"type": "path", "required": True}, "version": {"type": "int", "default": 0}},
        supports_check_mode=True,
    )
    root, version = module.params["root"], module.params["version"]
    folder = os.path.join(root, "releases")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    releases = sorted(
        int(name) for name in names if name.isdigit() and os.path.isdir(os.path.join(folder, name))
    )
    manifest = {}
    if version in releases:
        try:
            with open(os.path.join(folder, str(version), "bundle.json"), encoding="utf-8") as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            manifest = {}
    module.exit_json(
        changed=False,
        releases=releases,
        current=linked_release(os.path.join(root, "current")),
        previous=linked_release(os.path.join(root, "previous")),
        manifest=manifest if isinstance(manifest, dict) else {},
        others=[name for name in names if not (name.isdigit() and int(name) in releases)],
    )


if __name__ == "__main__":
    main()
