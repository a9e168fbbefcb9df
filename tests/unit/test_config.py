from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.errors import ConfigError
from kiosk.ports import KeyAlgorithm
from kiosk.shell import config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_and_are_documented(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, ""), check_files=False)
    assert cfg.kiosk.language == "mn"
    assert cfg.token.key_algorithm is KeyAlgorithm.RSA2048
    assert cfg.printer.host_port == ("127.0.0.1", 9100)
    text = (Path(config.__file__).parents[1] / "defaults.toml").read_text()
    settings = [ln for ln in text.splitlines() if ln and not ln.startswith(("#", "["))]
    assert len(settings) == sum(len(values) for values in config.defaults().values())
    for line in settings:
        assert "#" in line, f"{line!r} has no comment"


def test_the_receipts_qr_code_opens_the_verification_page_on_the_centrals_https_address(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[central]\nurl = "https://ca.example.mn:8443/"\n'), check_files=False)
    assert cfg.qr_template.format(serial="5A3F", invoice="1") == "https://ca.example.mn:8443/verify/5A3F"
    named = config.load(write(tmp_path, '[receipt]\nqr_template = "https://pki.example.mn/v/{serial}"\n'),
                        check_files=False)
    assert named.qr_template.format(serial="5A3F", invoice="1") == "https://pki.example.mn/v/5A3F"


@pytest.mark.parametrize("profile", ["piv", "opensc", "auto"])
def test_the_id_card_profile_chooses_how_the_card_is_read(tmp_path: Path, profile: str) -> None:
    cfg = config.load(write(tmp_path, f'[idcard]\nprofile = "{profile}"\n'), check_files=False)
    assert cfg.idcard.profile == profile


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[kiosk]\ndata_dir = "var"\n'), check_files=False)
    assert cfg.kiosk.data_dir == tmp_path / "var"


@pytest.mark.parametrize(("text", "setting"), [
    ('[kiosk]\nlanguage = "de"\n', "kiosk.language"),
    ('[kiosk]\nlangauge = "mn"\n', "kiosk.langauge"),
    ('[printer]\naddress = "localhost"\n', "printer.address"),
    ('[printer]\nkind = "serial"\n', "printer.kind"),
    ('[printer]\nwidth_px = 577\n', "printer.width_px"),
    ('[token]\nkey_algorithm = "rsa1024"\n', "token.key_algorithm"),
    ('[idcard]\nprofile = "pkcs15"\n', "idcard.profile"),
    ('[token]\nrescan = "yes"\n', "token.rescan"),
    ('[central]\nurl = "ftp://x"\n', "central.url"),
    ('[central]\nurl = "http://central.example"\n', "central.url"),     # mutual TLS: https only
    ('[central]\ntimeout_s = true\n', "central.timeout_s"),
    ('[kiosk]\ntimezone = "Mars/Base"\n', "kiosk.timezone"),
    ('[receipt]\nqr_template = "{nope}"\n', "receipt.qr_template"),
    ("kiosk = 3\n", "kiosk"),
])
def test_wrong_setting_is_named(tmp_path: Path, text: str, setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, text), check_files=False)
    assert err.value.data["setting"] == setting
    assert setting in str(err.value)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, '[central]\nca_chain = "nope"\n'))
    assert err.value.data["setting"] == "central.ca_chain"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(tmp_path / "absent.toml")
    assert "not found" in str(err.value)


def test_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        config.load(write(tmp_path, "[kiosk\n"))
