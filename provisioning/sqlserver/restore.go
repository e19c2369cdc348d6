package sqlserver

import (
	"errors"
	"fmt"
	"strings"
)

// backupFile is one row of RESTORE FILELISTONLY: a file of the backup.
type backupFile struct {
	Logical string // LogicalName
	Type    string // Type: D data, L log, F full-text, S filestream
}

// fileList reads the rows of RESTORE FILELISTONLY. SQL Server versions add
// columns; only LogicalName and Type are read, by name.
func fileList(columns []string, rows [][]any) ([]backupFile, error) {
	logical, typ := -1, -1
	for i, c := range columns {
		switch strings.ToLower(c) {
		case "logicalname":
			logical = i
		case "type":
			typ = i
		}
	}
	if logical < 0 || typ < 0 {
		return nil, fmt.Errorf("RESTORE FILELISTONLY returned no LogicalName or Type column (columns %v)", columns)
	}
	var files []backupFile
	for _, r := range rows {
		f := backupFile{Logical: text(r[logical]), Type: strings.ToUpper(strings.TrimSpace(text(r[typ])))}
		if f.Logical == "" {
			return nil, errors.New("RESTORE FILELISTONLY returned a file without a logical name")
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, errors.New("the backup holds no files")
	}
	return files, nil
}

func text(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case []byte:
		return string(t)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// placement is where a restored file goes and what it is called then.
type placement struct {
	Logical    string // in the backup
	NewLogical string // after the restore
	Path       string // on the server
}

// placeFiles puts each file of a backup restored as database into the
// server's default data or log directory, named after the database: the
// first data file <db>.mdf, further ones <db>_<n>.ndf, the first log
// <db>_log.ldf, further ones <db>_log<n>.ldf. The directories are the
// server's (InstanceDefaultDataPath, InstanceDefaultLogPath) and set the
// separator: a Windows host's paths hold '\', a Linux host's '/'.
func placeFiles(database string, files []backupFile, dataDir, logDir string) ([]placement, error) {
	if dataDir == "" || logDir == "" {
		return nil, errors.New("the server reports no default data or log directory (InstanceDefaultDataPath, InstanceDefaultLogPath)")
	}
	var out []placement
	data, logs := 0, 0
	for _, f := range files {
		p := placement{Logical: f.Logical}
		switch f.Type {
		case "L":
			logs++
			suffix := ""
			if logs > 1 {
				suffix = fmt.Sprint(logs)
			}
			p.NewLogical = database + "_log" + suffix
			p.Path = join(logDir, p.NewLogical+".ldf")
		case "D":
			data++
			ext := ".mdf"
			p.NewLogical = database
			if data > 1 {
				p.NewLogical = fmt.Sprintf("%s_%d", database, data)
				ext = ".ndf"
			}
			p.Path = join(dataDir, p.NewLogical+ext)
		default:
			return nil, fmt.Errorf("the backup holds a file of type %q (%s), which the restore does not place", f.Type, f.Logical)
		}
		out = append(out, p)
	}
	if data == 0 || logs == 0 {
		return nil, fmt.Errorf("the backup holds %d data and %d log files; a database needs at least one of each", data, logs)
	}
	return out, nil
}

// join appends name to dir with the separator dir's host uses.
func join(dir, name string) string {
	sep := "/"
	if strings.Contains(dir, `\`) {
		sep = `\`
	}
	return strings.TrimRight(dir, `/\`) + sep + name
}
