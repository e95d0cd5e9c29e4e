package clickhouse

import (
	"errors"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/mcptrail/mcptrail/recorder"
)

// permanentCodes are server exception codes that reject a batch for its
// contents: sending the same rows again gets the same answer, so the
// pipeline quarantines the batch instead of retrying it (and blocking every
// later one). Everything else (network, timeouts, memory, too many parts,
// a missing table that a migration creates) is retried.
var permanentCodes = map[int32]string{
	6:   "CANNOT_PARSE_TEXT",
	27:  "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
	38:  "CANNOT_PARSE_DATE",
	41:  "CANNOT_PARSE_DATETIME",
	53:  "TYPE_MISMATCH",
	69:  "ARGUMENT_OUT_OF_BOUND",
	70:  "CANNOT_CONVERT_TYPE",
	72:  "CANNOT_PARSE_NUMBER",
	117: "INCORRECT_DATA",
	131: "TOO_LARGE_STRING_SIZE",
	190: "SIZES_OF_ARRAYS_DOESNT_MATCH",
	321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
	395: "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO", // a materialized view's throwIf: a rule the rows break
	469: "VIOLATED_CONSTRAINT",
}

// tooManyParts is shared by a retryable condition (merges behind inserts)
// and a permanent one (one batch spans more partitions than
// max_partitions_per_insert_block allows), told apart by the message.
const tooManyParts = 252

// classify marks err permanent (recorder.Permanent) when the server
// rejected the rows themselves.
func classify(err error) error {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return err
	}
	if _, ok := permanentCodes[ex.Code]; ok {
		return recorder.Permanent(err)
	}
	if ex.Code == tooManyParts && strings.Contains(ex.Message, "single INSERT block") {
		return recorder.Permanent(err)
	}
	return err
}
