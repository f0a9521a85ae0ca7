"""Secrets masked as "******" whenever a config is read back; the author's key order is kept."""

from __future__ import annotations

import yaml

from openxpu_server.protocol import MASK, mask_secrets, masked_config_text, parse_job

TEXT = """\
protocolVersion: 2
name: masked
type: job
secrets:
  regpass: hunter2
  nested: {token: abc}
prerequisites:
  - type: dockerimage
    name: img
    uri: reg.example.com/a
    auth: {username: bot, password: "<% $secrets.regpass %>"}
taskRoles:
  worker:
    dockerImage: img
    resourcePerInstance: {cpu: 1, memoryMB: 128, gpu: 0}
    commands:
      - echo <% $secrets.regpass %>
      - >
        python train.py
        --long
"""


def test_mask_secrets_replaces_values_keeps_keys() -> None:
    original = yaml.safe_load(TEXT)
    masked = mask_secrets(original)
    assert masked["secrets"] == {"regpass": MASK, "nested": MASK}
    assert original["secrets"]["regpass"] == "hunter2"  # the input is untouched
    assert masked["taskRoles"] is original["taskRoles"]


def test_mask_secrets_without_secrets() -> None:
    assert mask_secrets({"a": 1}) == {"a": 1}
    assert mask_secrets({"secrets": None}) == {"secrets": None}
    assert mask_secrets({"secrets": "plain"})["secrets"] == MASK


def test_masked_config_text() -> None:
    text = masked_config_text(TEXT)
    assert "hunter2" not in text and "abc" not in text
    data = yaml.safe_load(text)
    assert data["secrets"] == {"regpass": MASK, "nested": MASK}
    assert list(data) == ["protocolVersion", "name", "type", "secrets", "prerequisites", "taskRoles"]
    # References stay references; nothing is rendered in the read-back config.
    assert data["prerequisites"][0]["auth"]["password"] == "<% $secrets.regpass %>"
    assert data["taskRoles"]["worker"]["commands"][0] == "echo <% $secrets.regpass %>"
    assert data["taskRoles"]["worker"]["commands"][1] == "python train.py --long\n"


def test_masked_config_text_from_mapping_and_bytes() -> None:
    assert masked_config_text(yaml.safe_load(TEXT)) == masked_config_text(TEXT.encode())


def test_parsed_spec_keeps_secrets() -> None:
    spec = parse_job(TEXT)
    assert spec.secrets == {"regpass": "hunter2", "nested": {"token": "abc"}}
    assert spec.protocol["prerequisites"][0]["auth"]["password"] == "hunter2"
    assert "hunter2" not in masked_config_text(spec.protocol)


def test_plain_registry_passwords_are_masked() -> None:
    protocol = {
        "prerequisites": [
            {"type": "dockerimage", "name": "a", "uri": "x", "auth": {"username": "u", "password": "plain"}},
            {"type": "dockerimage", "name": "b", "uri": "x", "auth": {"password": "<% $secrets.pw %>"}},
            {"type": "script", "name": "c", "uri": "x"},
        ]
    }
    masked = mask_secrets(protocol)
    assert masked["prerequisites"][0]["auth"] == {"username": "u", "password": MASK}
    assert masked["prerequisites"][1]["auth"] == {"password": "<% $secrets.pw %>"}
    assert masked["prerequisites"][2] is protocol["prerequisites"][2]
    assert protocol["prerequisites"][0]["auth"]["password"] == "plain"
