#!/usr/bin/python
# Copyright: the optimize maintainers. Apache-2.0.
"""Point the `previous` and `current` links of an optimize release folder at releases, each
atomically: a new link made beside the old one and renamed over it (rename(2)), so a reader sees
the old release or the new one and never no link."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: optimize_release_switch
short_description: Switch the current and previous links of an optimize release folder atomically
description:
  - Points O(root)/previous at releases/O(previous), then O(root)/current at releases/O(current).
  - Each link is replaced by renaming a new link over it (rename(2) replaces it in one step); it is
    never removed first. Links are relative (releases/<version>), so the folder may be mounted
    elsewhere.
  - A release of 0 removes that link. A link that already names its release is left alone.
options:
  root:
    description: The node's release folder (optimize_release_root).
    type: path
    required: true
  current:
    description: The release to serve; 0 removes the current link.
    type: int
    required: true
  previous:
    description: The release to record as served before it; 0 removes the previous link.
    type: int
    required: true
author:
  - optimize maintainers
"""

EXAMPLES = r"""
- name: Serve release 20250102080000, the one before it being 20250101120000
  optimize_release_switch:
    root: /opt/optimize/models
    current: 20250102080000
    previous: 20250101120000
"""

RETURN = r"""
before:
  description: The releases the links named before, by link name (0 for none).
  returned: always
  type: dict
  sample: {current: 20250101120000, previous: 0}
"""

# Ansible's module layout: the documentation comes before the imports
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def linked_release(path):
    if not os.path.islink(path):
        return 0
    name = os.path.basename(os.path.normpath(os.readlink(path)))
    return int(name) if name.isdigit() else 0


def point(module, root, name, release):
    """Point link `name` at `release` (0: remove it); returns whether anything changed."""
    link = os.path.join(root, name)
    if os.path.lexists(link) and not os.path.islink(link):
        module.fail_json(msg=f"{link} exists and is not a link: move it away")
    if release == 0:
        if not os.path.lexists(link):
            return False
        if not module.check_mode:
            os.unlink(link)
        return True
    target = f"releases/{release}"
    if not os.path.isdir(os.path.join(root, target)) and not module.check_mode:  # check mode: not unpacked
        module.fail_json(msg=f"no release {release} in {os.path.join(root, 'releases')}")
    if os.path.islink(link) and os.readlink(link) == target:
        return False
    if not module.check_mode:
        temporary = os.path.join(root, f".{name}.{os.getpid()}.new")
        try:
            os.symlink(target, temporary)
            os.replace(temporary, link)
        except OSError as error:
            if os.path.lexists(temporary):
                os.unlink(temporary)
            module.fail_json(msg=f"cannot point {link} at {target}: {error}")
    return True


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "current": {"type": "int", "required": True},
            "previous": {"type": "int", "required": True},
        },
        supports_check_mode=True,
    )
    root = module.params["root"]
    before = {name: linked_release(os.path.join(root, name)) for name in ("current", "previous")}
    changed = point(module, root, "previous", module.params["previous"])
    changed = point(module, root, "current", module.params["current"]) or changed
    module.exit_json(changed=changed, before=before)


if __name__ == "__main__":
    main()
