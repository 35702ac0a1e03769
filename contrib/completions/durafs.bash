# bash completion for durafs(1): commands, subcommands, options, mount -o
# options, sources and mountpoints. Everything is read from the binary's own
# `durafs --help` and `durafs COMMAND --help` (once per shell), so the
# completion follows the binary it completes and never drifts from it.
# Installed as $(PREFIX)/share/bash-completion/completions/durafs; works with
# or without the bash-completion package (bash >= 4.2).

declare -gA _durafs_help_cache 2>/dev/null || true

# _durafs_help BIN [COMMAND]: the help text of `BIN [COMMAND] --help` in
# REPLY (empty when the command has none, e.g. a planned one). Cached.
_durafs_help()
{
	local key="$1|${2:-}"
	if [[ -z ${_durafs_help_cache[$key]+set} ]]; then
		if [[ -n ${2:-} ]]; then
			_durafs_help_cache[$key]=$("$1" "$2" --help 2>/dev/null)
		else
			_durafs_help_cache[$key]=$("$1" --help 2>/dev/null)
		fi
	fi
	REPLY=${_durafs_help_cache[$key]}
}

# _durafs_usage_line BIN COMMAND: the command's entry in the "Commands:"
# list of `durafs --help`, without a leading "durafs " ("mount SOURCE
# MOUNTPOINT [...]"), in REPLY. An entry starts at a line indented by
# exactly two spaces; its summary may follow on deeper-indented lines.
_durafs_usage_line()
{
	local line text in_cmds=0
	_durafs_help "$1"
	text=$REPLY
	REPLY=
	while IFS= read -r line; do
		if [[ $line == Commands:* ]]; then
			in_cmds=1
		elif ((in_cmds)) && [[ -z ${line//[[:space:]]/} ]]; then
			break
		elif ((in_cmds)) && [[ $line =~ ^\ \ (durafs\ )?([a-z][a-z0-9-]*)(\ |$) ]] &&
			[[ ${BASH_REMATCH[2]} == "$2" ]]; then
			REPLY=${line#  }
			REPLY=${REPLY#durafs }
			return
		fi
	done <<<"$text"
}

# _durafs_commands BIN: the command names of `durafs --help`, in REPLY.
_durafs_commands()
{
	local line in_cmds=0 out=
	_durafs_help "$1"
	while IFS= read -r line; do
		if [[ $line == Commands:* ]]; then
			in_cmds=1
		elif ((in_cmds)) && [[ -z ${line//[[:space:]]/} ]]; then
			break
		elif ((in_cmds)) && [[ $line =~ ^\ \ (durafs\ )?([a-z][a-z0-9-]*)(\ |$) ]]; then
			out+="${BASH_REMATCH[2]} "
		fi
	done <<<"$REPLY"
	REPLY=$out
}

# _durafs_subcommands BIN COMMAND: "login whoami print-token" for
# "auth login|whoami|print-token [options]", empty for a command without.
_durafs_subcommands()
{
	_durafs_usage_line "$1" "$2"
	local -a w
	read -r -a w <<<"$REPLY"
	REPLY=
	if [[ ${w[1]:-} =~ ^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*$ ]]; then
		REPLY=${w[1]//|/ }
	fi
}

# _durafs_text BIN COMMAND: the command's help, or for a command without
# one (a planned command), its line of `durafs --help`, in REPLY.
_durafs_text()
{
	_durafs_help "$1" "$2"
	if [[ -z $REPLY ]]; then
		_durafs_usage_line "$1" "$2"
	fi
}

# _durafs_listed TEXT: the options a help text lists, space-separated, in
# REPLY: every -x / --long token of its usage block ("usage:" to the first
# blank line) and those that start an indented line, before the description
# ("  -f, --foreground  stay..."). Options named in prose do not count.
_durafs_listed()
{
	local line part out=" " tok in_usage=0
	while IFS= read -r line; do
		if [[ $line == usage:* ]]; then
			in_usage=1
		elif [[ -z ${line//[[:space:]]/} ]]; then
			in_usage=0
		fi
		if ((in_usage)); then
			part=$line
		elif [[ $line =~ ^[[:space:]]+(-.*)$ ]]; then
			part=${BASH_REMATCH[1]}
			part=${part%%  *}
		else
			continue
		fi
		while read -r tok; do
			[[ -n $tok && $out != *" $tok "* ]] && out+="$tok "
		done < <(grep -oE '(^|[][ (|,])--?[a-zA-Z][a-zA-Z0-9-]*' <<<"$part" | sed -E 's/^[^-]+//')
	done <<<"$1"
	REPLY=$out
}

# _durafs_options BIN COMMAND: the options of COMMAND's help (for a command
# without one, those of its line of `durafs --help`), in REPLY.
_durafs_options()
{
	_durafs_help "$1" "$2"
	if [[ -z $REPLY ]]; then
		_durafs_usage_line "$1" "$2"
		REPLY="usage: $REPLY"
	fi
	_durafs_listed "$REPLY"
	[[ $REPLY == *" --help "* ]] || REPLY+="--help "
}

# _durafs_top_options BIN: the options of `durafs --help` itself (--help,
# --version...), those listed before its command list.
_durafs_top_options()
{
	_durafs_help "$1"
	_durafs_listed "${REPLY%%Commands:*}"
}

# _durafs_optarg BIN COMMAND OPTION: the placeholder of OPTION's argument
# ("DIR" for "--cache-dir DIR"), empty for a flag. The option's own line in
# the help decides; else its first mention in a usage line.
_durafs_optarg()
{
	local text line
	_durafs_text "$1" "$2"
	text=$REPLY
	REPLY=
	line=$(grep -E -m 1 -- "^ +(--?[a-zA-Z][a-zA-Z0-9-]*, )?$3(, --?[a-zA-Z][a-zA-Z0-9-]*)?([ =][A-Z][A-Z_|.-]*)?( {2,}|\$)" <<<"$text")
	if [[ -n $line ]]; then
		if [[ $line =~ ^\ +(--?[a-zA-Z][a-zA-Z0-9-]*,\ )?$3(,\ --?[a-zA-Z][a-zA-Z0-9-]*)?[\ =]([A-Z][A-Z_|.-]*) ]]; then
			REPLY=${BASH_REMATCH[3]}
		fi
		return
	fi
	line=$(grep -oE -m 1 -- "(^|[][ (|,])$3[ =][A-Z][A-Z_|.-]*" <<<"$text" | head -n 1)
	[[ -n $line ]] && REPLY=${line##*[ =]}
	[[ $REPLY == MOUNTPOINT* ]] && REPLY=
	return 0
}

# _durafs_positional BIN COMMAND N HAS_SUB: the placeholder of COMMAND's
# N-th positional argument (0-based, after the subcommand when HAS_SUB) in
# its `durafs --help` usage ("mount SOURCE MOUNTPOINT [...]": 0 -> SOURCE,
# 1 -> MOUNTPOINT), skipping [optional] groups and options with their
# arguments; "A|--opt X" counts as A. "PATH..." repeats. Empty if none.
_durafs_positional()
{
	local -a w
	local i k=0 depth=0 t o c alt last='' skip=0
	_durafs_usage_line "$1" "$2"
	read -r -a w <<<"$REPLY"
	REPLY=
	i=1
	[[ -n ${4:-} ]] && i=2
	for (( ; i < ${#w[@]}; i++)); do
		t=${w[i]}
		if ((depth > 0)) || [[ $t == \[* ]]; then
			o=${t//[^\[]/}
			c=${t//[^\]]/}
			depth=$((depth + ${#o} - ${#c}))
			((depth < 0)) && depth=0
			continue
		fi
		if ((skip)); then
			skip=0
			continue
		fi
		if [[ $t == -* ]]; then
			_durafs_optarg "$1" "$2" "${t%%|*}"
			[[ -n $REPLY ]] && skip=1
			REPLY=
			continue
		fi
		[[ $t =~ ^[A-Z] ]] || break  # the summary: no more placeholders
		alt=${t%%|*}
		[[ $t == *'|'* && ${t##*|} == -* ]] && skip=1
		last=$alt
		if ((k == $3)); then
			REPLY=$alt
			return
		fi
		((k++))
	done
	[[ $last == *... ]] && REPLY=$last
	return 0
}

# _durafs_mount_opts BIN: the -o options of `durafs mount --help`, one per
# line as "name" or "name=PLACEHOLDER".
_durafs_mount_opts()
{
	local line in_opts=0 out=
	_durafs_help "$1" mount
	while IFS= read -r line; do
		if [[ $line =~ ^\ +-o\  ]]; then
			in_opts=1
		elif ((in_opts)) && [[ $line =~ ^\ \ ([a-z][a-z0-9_.]*)(=([^ ]*))?( |$) ]]; then
			out+="${BASH_REMATCH[1]}${BASH_REMATCH[2]}"$'\n'
		elif ((in_opts)) && [[ -z $line ]]; then
			break
		fi
	done <<<"$REPLY"
	REPLY=$out
}

# _durafs_mountpoints: mountpoints of running durafs mounts.
_durafs_mountpoints()
{
	local _ mp rest
	REPLY=
	[[ -r /proc/self/mountinfo ]] || return
	while read -r _ _ _ _ mp rest; do
		if [[ " $rest " == *" - fuse.durafs "* ]]; then
			printf -v mp '%b' "${mp//\\/\\0}"
			REPLY+="$mp"$'\n'
		fi
	done </proc/self/mountinfo
}

# _durafs_words: COMP_WORDS with the pieces bash split at ':' and '='
# joined again (gs://b, --opt=v), into words, cword and cur.
_durafs_words()
{
	local line=${COMP_LINE:0:${COMP_POINT:-${#COMP_LINE}}} i w sep
	words=()
	cword=0
	for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
		w=${COMP_WORDS[i]}
		sep=${line%%[![:space:]]*}
		line=${line#"$sep"}
		if ((i > 0)) && [[ -z $sep ]] &&
			[[ $w == [:=]* || ${COMP_WORDS[i - 1]} == *[:=] ]]; then
			words[${#words[@]} - 1]+=$w
		else
			words+=("$w")
		fi
		line=${line#"$w"}
		if ((i == COMP_CWORD)); then
			cword=$((${#words[@]} - 1))
		fi
	done
	cur=${words[cword]:-}
}

# _durafs_reply WORDS...: set COMPREPLY to those matching cur, trimmed of
# what bash already has before its last ':' or '=' break.
_durafs_reply()
{
	local w pre=${cur%"${cur##*[:=]}"}
	COMPREPLY=()
	for w in "$@"; do
		[[ $w == "$cur"* ]] || continue
		COMPREPLY+=("${w#"$pre"}")
	done
}

# _durafs_files [-d]: file names (-d: directories only) completing cur.
_durafs_files()
{
	local pre=${cur%"${cur##*[:=]}"} w kind=-f
	[[ ${1:-} == -d ]] && kind=-d
	COMPREPLY=()
	while IFS= read -r w; do
		[[ -n $w ]] && COMPREPLY+=("${w#"$pre"}")
	done < <(compgen "$kind" -- "$cur")
	compopt -o filenames 2>/dev/null
}

_durafs()
{
	local -a words
	local cword cur REPLY bin cmd='' sub='' subs='' i w arg='' npos=0 prev
	_durafs_words
	bin=${words[0]}
	[[ $bin == */* || -z $bin ]] || bin=$(type -P "$bin" 2>/dev/null)
	[[ -x $bin ]] || bin=$(type -P durafs 2>/dev/null)
	[[ -x $bin ]] || return 0

	_durafs_commands "$bin"
	local commands=$REPLY

	# the command, its subcommand, and how many positionals come before cur
	for ((i = 1; i < cword; i++)); do
		w=${words[i]}
		if [[ -z $cmd ]]; then
			[[ $w == -* ]] && continue
			cmd=$w
			_durafs_subcommands "$bin" "$cmd"
			subs=$REPLY
			continue
		fi
		if [[ $w == -* ]]; then
			if [[ $w != *=* ]]; then
				_durafs_optarg "$bin" "$cmd" "$w"
				[[ -n $REPLY ]] && ((i++))
			fi
			continue
		fi
		if [[ -n ${subs:-} && -z $sub ]]; then
			sub=$w
			continue
		fi
		((npos++))
	done

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			_durafs_top_options "$bin"
			# shellcheck disable=SC2086
			_durafs_reply $REPLY
		else
			# shellcheck disable=SC2086
			_durafs_reply $commands
		fi
		return 0
	fi

	# the argument of an option
	prev=${words[cword - 1]}
	if ((cword > 1)) && [[ $prev == -* && $prev != *=* && $cur != -* ]]; then
		_durafs_optarg "$bin" "$cmd" "$prev"
		arg=$REPLY
	fi
	if [[ $cur == --*=* ]]; then
		prev=${cur%%=*}
		_durafs_optarg "$bin" "$cmd" "$prev"
		arg=$REPLY
		[[ -n $arg ]] || return 0
		cur=${cur#*=}  # bash completes what follows the '='
	fi
	if [[ -n ${arg:-} ]]; then
		case $arg in
		OPTS | OPT*) _durafs_complete_mount_opts "$bin" ;;
		DIR) _durafs_files -d ;;
		FILE | PATH) _durafs_files ;;
		*) COMPREPLY=() ;;
		esac
		return 0
	fi

	if [[ $cur == -* ]]; then
		_durafs_options "$bin" "$cmd"
		# shellcheck disable=SC2086
		_durafs_reply $REPLY
		return 0
	fi
	if [[ -n ${subs:-} && -z $sub ]]; then
		# shellcheck disable=SC2086
		_durafs_reply $subs
		return 0
	fi
	_durafs_positional "$bin" "$cmd" "$npos" "${subs:+1}"
	case $REPLY in
	SOURCE*)
		_durafs_reply gs:// drive:
		compopt -o nospace 2>/dev/null ;;
	MOUNTPOINT*)
		# `mount` wants a directory to mount on; the others a running mount
		if [[ $cmd == mount ]]; then
			_durafs_files -d
			return 0
		fi
		_durafs_mountpoints
		local -a mps=()
		mapfile -t mps <<<"${REPLY%$'\n'}"
		_durafs_reply "${mps[@]}"
		if ((${#COMPREPLY[@]} == 0)); then
			_durafs_files -d
		fi ;;
	DIR*)
		_durafs_files -d ;;
	"")
		COMPREPLY=() ;;
	*)
		_durafs_files ;;
	esac
	return 0
}

# Complete a comma-separated -o list: the part after the last comma is an
# option name, or the value of name=VALUE (a choice "a|b", or a PATH).
_durafs_complete_mount_opts()
{
	local done_part='' last=$cur opt name ph w
	local -a names=()
	if [[ $cur == *,* ]]; then
		done_part=${cur%,*},
		last=${cur##*,}
	fi
	_durafs_mount_opts "$1"
	local opts=$REPLY
	if [[ $last == *=* ]]; then
		name=${last%%=*}
		while IFS= read -r opt; do
			[[ ${opt%%=*} == "$name" ]] || continue
			ph=${opt#*=}
			if [[ $ph == *'|'* ]]; then
				local -a choices
				IFS='|' read -r -a choices <<<"$ph"
				for w in "${choices[@]}"; do
					names+=("$done_part$name=$w")
				done
			elif [[ $ph == PATH || $ph == FILE ]]; then
				local f
				while IFS= read -r f; do
					names+=("$done_part$name=$f")
				done < <(compgen -f -- "${last#*=}")
			fi
		done <<<"$opts"
		_durafs_reply "${names[@]}"
		return
	fi
	while IFS= read -r opt; do
		[[ -n $opt ]] || continue
		if [[ $opt == *=* ]]; then
			names+=("$done_part${opt%%=*}=")
		else
			names+=("$done_part$opt")
		fi
	done <<<"$opts"
	_durafs_reply "${names[@]}"
	compopt -o nospace 2>/dev/null
}

complete -F _durafs durafs
