"""Helpers for mount tests on Google Drive (the emulator's Drive service):
mount a drive: source against the emulator, create files through its
control API, and look at what the remote holds through the Drive v3 API.

Typical use::

    from mount_util import mounts  # noqa: F401  (fixture)
    from drive_util import Drive, mount_drive

    def test_x(mounts, emulator_noauth):
        dr = Drive(emulator_noauth)
        m = mount_drive(mounts, emulator_noauth, "drive:", ["writeback_delay=0"])
"""
import base64
import hashlib
import json
import urllib.parse

FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
DOC = "application/vnd.google-apps.document"


def mount_drive(mounts, emu, source="drive:", options=(), **kw):
    """A Mount of `source` with the emulator as Drive endpoint
    ($DURAFS_DRIVE_ENDPOINT: no credentials are sent)."""
    env = dict(kw.pop("env", None) or {})
    env["DURAFS_DRIVE_ENDPOINT"] = emu.url
    return mounts(emu, source, options=options, env=env, endpoint_env=False, **kw)


class Drive:
    """The emulator's Drive service, seen through its API."""

    def __init__(self, emu):
        self.emu = emu

    def root(self):
        return self.emu.control("drive/root")["id"]

    def make(self, files):
        """Create files with the control API (no rate limit, no quota);
        returns their resources."""
        return self.emu.control("drive/files", {"files": files})["files"]

    def folder(self, name, parent=None):
        return self.make([{"name": name, "parent": parent or self.root(),
                           "mimeType": FOLDER}])[0]["id"]

    def file(self, name, content=b"", parent=None, **extra):
        f = {"name": name, "parent": parent or self.root(),
             "content_b64": base64.b64encode(content).decode()}
        f.update(extra)
        return self.make([f])[0]

    def get(self, fid, fields="id,name,parents,trashed,size,md5Checksum,version,mimeType"):
        st, _, body = self.emu.request("GET", "/drive/v3/files/%s?supportsAllDrives=true&"
                                       "fields=%s" % (fid, fields))
        assert st == 200, (st, body[:300])
        return json.loads(body)

    def content(self, fid):
        st, _, body = self.emu.request("GET", "/drive/v3/files/%s?alt=media&"
                                       "supportsAllDrives=true" % fid)
        assert st == 200, (st, body[:300])
        return body

    def query(self, q, fields="id,name,trashed,size,md5Checksum,mimeType,parents",
              extra=None):
        """Every file matching q, through every page."""
        out, tok = [], None
        while True:
            params = {"q": q, "pageSize": 1000,
                      "fields": "nextPageToken,files(%s)" % fields,
                      "supportsAllDrives": "true", "includeItemsFromAllDrives": "true"}
            params.update(extra or {})
            if tok:
                params["pageToken"] = tok
            st, _, body = self.emu.request("GET", "/drive/v3/files?" +
                                           urllib.parse.urlencode(params))
            assert st == 200, (st, body[:300])
            j = json.loads(body)
            out += j.get("files", [])
            tok = j.get("nextPageToken")
            if not tok:
                return out

    def children(self, parent=None, trashed=False):
        """{name: [resources]} of the live (or trashed) children of parent."""
        q = "'%s' in parents and trashed = %s" % (parent or self.root(),
                                                  "true" if trashed else "false")
        out = {}
        for f in self.query(q):
            out.setdefault(f["name"], []).append(f)
        return out

    def lookup(self, path, parent=None):
        """The live resource at a Drive path ("a/b" by Drive names), or None."""
        cur = parent or self.root()
        res = None
        for comp in path.split("/"):
            kids = self.children(cur).get(comp)
            if not kids:
                return None
            res = kids[0]
            cur = res["id"]
        return res


def md5hex(data):
    return hashlib.md5(data).hexdigest()


def counter(stats, name):
    return stats.get("counters", {}).get(name, 0)


def requests_of(stats, kind):
    """Total requests of one kind, whatever their status."""
    return sum(stats.get("requests", {}).get(kind, {}).values())
