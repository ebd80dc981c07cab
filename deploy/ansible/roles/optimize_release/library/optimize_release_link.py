#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the optimize project)
"""Point a release link (current or previous) at a release atomically: a new link made beside it
and renamed over it, so a reader sees the old release or the new one and never no link."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: optimize_release_link
short_description: Switch an optimize release link atomically
description:
  - Points O(root)/O(name) at releases/O(release) (a relative link) by creating a temporary link
    beside it and renaming it over the old one (rename(2) replaces it in one step); never removes
    the link first.
  - O(release) 0 removes the link.
  - Unchanged when the link already names the release.
options:
  root:
    description: The node's release folder (optimize_root).
    type: path
    required: true
  name:
    description: The link to switch.
    type: str
    choices: [current, previous]
    required: true
  release:
    description: The release version to point at; 0 removes the link.
    type: int
    required: true
author:
  - optimize maintainers
"""

EXAMPLES = r"""
- name: Serve release 20250101120000
  optimize_release_link:
    root: /opt/optimize/models
    name: current
    release: 20250101120000
"""

RETURN = r"""
before:
  description: The release the link named before; 0 when there was no link.
  returned: always
  type: int
after:
  description: The release the link names now; 0 when there is no link.
  returned: always
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule


def linked_release(path):
    if not os.path.islink(path):
        return 0
    name = os.path.basename(os.path.normpath(os.readlink(path)))
    return int(name) if name.isdigit() else 0


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "name": {"type": "str", "required": True, "choices": ["current", "previous"]},
            "release": {"type": "int", "required": True},
        },
        supports_check_mode=True,
    )
    root, name, release = module.params["root"], module.params["name"], module.params["release"]
    link = os.path.join(root, name)
    target = "releases/%d" % release
    before = linked_release(link)
    if os.path.lexists(link) and not os.path.islink(link):
        module.fail_json(msg="%s exists and is not a link: move it away" % link, before=0, after=0)
    if release and not os.path.isdir(os.path.join(root, target)):
        module.fail_json(msg="no release %d in %s" % (release, os.path.join(root, "releases")), before=before, after=before)
    if release == 0:
        if not os.path.lexists(link):
            module.exit_json(changed=False, before=0, after=0)
        if not module.check_mode:
            os.unlink(link)
        module.exit_json(changed=True, before=before, after=0)
    if os.path.islink(link) and os.readlink(link) == target:
        module.exit_json(changed=False, before=before, after=release)
    if not module.check_mode:
        temporary = os.path.join(root, ".%s.%d.new" % (name, os.getpid()))
        try:
            os.symlink(target, temporary)
            os.replace(temporary, link)
        except OSError as error:
            if os.path.lexists(temporary):
                os.unlink(temporary)
            module.fail_json(msg="cannot switch %s to %s: %s" % (link, target, error), before=before, after=before)
    module.exit_json(changed=True, before=before, after=release)


if __name__ == "__main__":
    main()
