package batch

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// OutputColumns is the output CSV's header: the contract other teams' sheets
// and scripts read.
var OutputColumns = []string{"line", "id", "status", "chatid", "invite_url", "member_count", "possible_duplicate", "reason", "message"}

// WriteCSV writes the header and one line per outcome, in the order given.
// member_count and possible_duplicate are empty unless the row was provisioned.
func WriteCSV(w io.Writer, outcomes []Outcome) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(OutputColumns); err != nil {
		return fmt.Errorf("batch: writing the results: %w", err)
	}
	for _, o := range outcomes {
		r := o.Result
		var count, dup string
		switch r.Status {
		case Provisioned:
			count, dup = strconv.Itoa(r.MemberCount), strconv.FormatBool(r.PossibleDuplicate)
		case Updated:
			count = strconv.Itoa(r.MemberCount)
		}
		rec := []string{strconv.Itoa(o.Row.Line), o.Row.ID, string(r.Status), r.ChatID, r.InviteURL, count, dup, r.Reason, r.Message}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("batch: writing the results: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("batch: writing the results: %w", err)
	}
	return nil
}

// WriteFile writes the outcomes to path atomically: to a temporary file
// beside it, synced, then renamed over it. A reader sees the old file or the
// new one, never half of one, whenever the command stops.
func WriteFile(path string, outcomes []Outcome) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = WriteCSV(tmp, outcomes); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	return nil
}
