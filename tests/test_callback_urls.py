import pytest

from server.mpesa.callback_urls import CallbackUrlError, callback_urls, forbidden_word_in


def test_callback_urls_use_the_secret_path_segment() -> None:
    validation, confirmation = callback_urls("https://pay.example.org/", "s3cret-path")
    assert validation == "https://pay.example.org/api/v1/c2b/validation/s3cret-path"
    assert confirmation == "https://pay.example.org/api/v1/c2b/confirmation/s3cret-path"


@pytest.mark.parametrize(
    "word", ["mpesa", "M-Pesa", "SAFARICOM", "exe", "Exec", "cmd", "sql", "Query"]
)
def test_a_word_daraja_forbids_is_never_built_into_a_url(word: str) -> None:
    with pytest.raises(CallbackUrlError, match="which Daraja refuses"):
        callback_urls(f"https://{word}.example.org", "secret-path")


def test_the_gateways_own_paths_contain_no_forbidden_word() -> None:
    validation, confirmation = callback_urls("https://pay.example.org", "abcdefgh")
    assert forbidden_word_in(validation) is None
    assert forbidden_word_in(confirmation) is None
