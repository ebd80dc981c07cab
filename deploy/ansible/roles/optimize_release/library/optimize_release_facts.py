#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the optimize project)
"""Read a node's release folder in one call: its releases, the current and previous links, and
the archive checksum recorded for a release."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: optimize_release_facts
short_description: Read the releases, links and recorded archive checksum of an optimize release folder
description:
  - Lists the releases under O(root)/releases (folders named by an integer version), reads which
    release the O(root)/current and O(root)/previous links name, and the archive checksum recorded
    for O(version) in O(root)/releases/.<version>.sha256.
  - Reads only; never changes anything.
options:
  root:
    description: The node's release folder (optimize_root).
    type: path
    required: true
  version:
    description: The release whose recorded archive checksum to read; 0 reads none.
    type: int
    default: 0
author:
  - optimize maintainers
"""

EXAMPLES = r"""
- name: Read the node's releases
  optimize_release_facts:
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
  description: The release the current link names; 0 when there is no current link.
  returned: always
  type: int
previous:
  description: The release the previous link names; 0 when there is no previous link.
  returned: always
  type: int
recorded_sha256:
  description: The archive checksum recorded for O(version); empty when none is.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule


def linked_release(path):
    """The integer version a link names (its last path component), 0 when the path is no link to
    a release."""
    if not os.path.islink(path):
        return 0
    name = os.path.basename(os.path.normpath(os.readlink(path)))
    return int(name) if name.isdigit() else 0


def main():
    module = AnsibleModule(
        argument_spec={"root": {"type": "path", "required": True}, "version": {"type": "int", "default": 0}},
        supports_check_mode=True,
    )
    root = module.params["root"]
    version = module.params["version"]
    folder = os.path.join(root, "releases")
    releases = []
    if os.path.isdir(folder):
        releases = sorted(
            int(name) for name in os.listdir(folder) if name.isdigit() and os.path.isdir(os.path.join(folder, name))
        )
    recorded = ""
    marker = os.path.join(folder, ".%d.sha256" % version)
    if version and os.path.isfile(marker):
        with open(marker, encoding="ascii", errors="replace") as handle:
            recorded = handle.read().strip()
    module.exit_json(
        changed=False,
        releases=releases,
        current=linked_release(os.path.join(root, "current")),
        previous=linked_release(os.path.join(root, "previous")),
        recorded_sha256=recorded,
    )


if __name__ == "__main__":
    main()
