"""Bounds on a document, beyond what GraphQL validates: a seed document is short and
shallow, so a long, deep or wide one is refused before it runs.

The text is bounded by the handler's schema and the parser's token count; after
validation, each operation's depth (through its fragments) and its number of root
fields (each root field is a call to a service)."""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

MAX_QUERY_CHARS = 20_000
MAX_TOKENS = 2_000
# The seed's documents are 3 fields deep; the standard introspection query (what
# GraphQL tools send first) is 15, its type references nesting 9 levels.
MAX_DEPTH = 20
MAX_ROOT_FIELDS = 5


def limit_errors(document: DocumentNode) -> list[GraphQLError]:
    """The bounds each operation of a valid document goes past (no fragment cycles:
    validation refused those)."""
    selected = _Selections(document)
    errors = []
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode):
            continue
        name = f"operation {operation.name.value}" if operation.name else "the operation"
        roots = {_key(field) for field in selected.fields(operation.selection_set)}
        if len(roots) > MAX_ROOT_FIELDS:
            errors.append(
                GraphQLError(
                    f"{name} has {len(roots)} root fields; at most {MAX_ROOT_FIELDS} are allowed",
                    operation,
                )
            )
        if selected.deeper_than(operation.selection_set, MAX_DEPTH):
            errors.append(
                GraphQLError(f"{name} is nested deeper than {MAX_DEPTH} fields", operation)
            )
    return errors


def _key(field: FieldNode) -> str:
    """The field's key in the answer: fields of one key are merged into one."""
    return (field.alias or field.name).value


class _Selections:
    """The fields of the document's selection sets, each set expanded once."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self.expanded: dict[int, list[FieldNode]] = {}

    def fields(self, selections: SelectionSetNode) -> list[FieldNode]:
        """The fields a selection set selects, its fragments' included (each fragment
        once, as execution collects them)."""
        known = self.expanded.get(id(selections))
        if known is not None:
            return known
        found: list[FieldNode] = []
        pending, spread = [selections], set()
        while pending:
            for selection in pending.pop().selections:
                if isinstance(selection, FieldNode):
                    found.append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    pending.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name not in spread:
                        spread.add(name)
                        pending.append(self.fragments[name].selection_set)
        self.expanded[id(selections)] = found
        return found

    def deeper_than(self, selections: SelectionSetNode, depth: int) -> bool:
        """Whether fields nest more than `depth` levels below `selections`, level by
        level, each field node once per level."""
        level = {id(field): field for field in self.fields(selections)}
        for _ in range(depth):
            level = {
                id(child): child
                for field in level.values()
                if field.selection_set is not None
                for child in self.fields(field.selection_set)
            }
            if not level:
                return False
        return True
