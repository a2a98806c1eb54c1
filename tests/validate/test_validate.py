#!/usr/bin/env python3
"""Tests of validate.py: it must reject what current Kubernetes rejects, or its green means nothing.

Run with the Python that has kubernetes-validate: "$(tests/lib/python-venv.sh kubernetes-validate-venv
kubernetes-validate kubernetes_validate)" tests/validate/test_validate.py
"""

import contextlib
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import validate  # noqa: E402

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
       "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def quiet_main(argv: list) -> int:
    """validate.main without its report (a test's FAIL lines would read as real ones)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return validate.main(argv)


def failures_of(body: dict, version: str = "1.37") -> list:
    return validate.check(validate.Document("test.yaml", 0, body), version)


class ValidateTest(unittest.TestCase):
    def test_a_valid_pod_passes_on_every_release(self):
        for version in validate.versions_from("1.25"):
            self.assertEqual(failures_of(POD, version), [], version)

    def test_an_unknown_field_fails_naming_the_field(self):
        typo = {**POD, "spec": {"containers": [{"name": "main", "image": "busybox", "imagePullPolice": "Never"}]}}
        [failure] = failures_of(typo)
        self.assertIn("spec.containers.0", str(failure))
        self.assertIn("imagePullPolice", str(failure))
        self.assertIn("Pod n/p on Kubernetes 1.37", str(failure))

    def test_a_kind_the_release_no_longer_serves_fails(self):
        psp = {"apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy", "metadata": {"name": "old"}, "spec": {}}
        [failure] = failures_of(psp, "1.25")
        self.assertIn("does not serve it", str(failure))

    def test_the_releases_start_at_the_minimum_and_end_at_the_newest_shipped(self):
        versions = validate.versions_from("1.25")
        self.assertEqual(versions[0], "1.25")
        self.assertGreaterEqual(len(versions), 13)

    def test_own_objects_are_skipped_and_a_bad_file_is_exit_1(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as manifest:
            manifest.write("apiVersion: stoppablecontainer.xtlsoft.top/v1alpha1\nkind: StoppableContainer\n"
                           "metadata: {name: mine}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
                           "spec: {containers: [{name: main, image: busybox, imagePullPolice: Never}]}\n")
            manifest.flush()
            self.assertTrue(validate.is_own(validate.documents_of(manifest.name)[0]))
            self.assertEqual(quiet_main(["--min-version", "1.36", manifest.name]), 1)

    def test_input_that_is_not_kubernetes_objects_is_exit_2(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as manifest:
            manifest.write("just: a map\n")
            manifest.flush()
            self.assertEqual(quiet_main([manifest.name]), 2)


if __name__ == "__main__":
    unittest.main()
