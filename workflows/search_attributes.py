"""The custom search attributes debflow sets; temporal-dev.yaml registers the same names."""

from temporalio.common import SearchAttributeKey

PACKAGE = SearchAttributeKey.for_keyword("DebflowPackage")
VERSION = SearchAttributeKey.for_keyword("DebflowVersion")
SUITE = SearchAttributeKey.for_keyword("DebflowSuite")
KIND = SearchAttributeKey.for_keyword("DebflowKind")
RESULT = SearchAttributeKey.for_keyword("DebflowResult")
ARCHITECTURES = SearchAttributeKey.for_keyword_list("DebflowArchitectures")
REGRESSIONS = SearchAttributeKey.for_int("DebflowRegressions")

ALL = (PACKAGE, VERSION, SUITE, KIND, RESULT, ARCHITECTURES, REGRESSIONS)
