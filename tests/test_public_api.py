"""The names users import are the ones we mean to export."""

import proofmarket
from proofmarket.core import errors


def test_exported_names() -> None:
    assert set(proofmarket.__all__) == {
        "ArtifactNotFound", "BundleError", "ChainError", "Client", "InferenceResult", "InputError", "ModelError",
        "PaymentError",
        "PrivacyProfile", "ProofBundle", "ProofMarketError", "ProvingError", "UnsupportedOperator",
        "VerificationFailed", "VerifyReport", "Workspace", "__version__", "verify_bundle", "discover",
    }
    for name in proofmarket.__all__:
        assert hasattr(proofmarket, name)


def test_every_error_has_a_stable_code_and_status() -> None:
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.ProofMarketError) and c is not errors.ProofMarketError]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), "error codes are unique"
    assert all(errors.error_codes()[c.code] is c for c in classes), "every class of the tree is registered"
    for cls in classes:
        assert 400 <= cls.http_status < 600
        assert cls.exit_code in range(1, 6)
    assert errors.VerificationFailed.exit_code == 1
    assert errors.ArtifactNotFound.exit_code == 2
