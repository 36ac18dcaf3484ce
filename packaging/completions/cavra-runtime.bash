_cavra__runtime() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="cavra__runtime"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        cavra__runtime)
            opts="-h -V --serve --daemon --verify-evidence --check --reload --completions --metrics --lifecycle --hook --json-field --policy --policy-dir --default-pack --registry --pin-pack --pin-pack-for --on-other-pack --workspace-root --path-case --socket --socket-mode --listen-fd-name --metrics-listen-fd-name --max-request-bytes --max-connections --max-connections-per-uid --max-buffered-bytes --request-timeout --idle-timeout --shutdown-grace --max-decisions-per-second-per-uid --decision-burst-per-uid --max-evidence-bytes-per-second-per-uid --evidence-burst-bytes-per-uid --log-target --log-format --log-decisions --log-file --evidence-log --evidence-sync --evidence-signing-key-file --evidence-ed25519-key-file --evidence-signing-key-id --evidence-public-key --evidence-recover --evidence-min-free --log-evidence-records --journal --allow-uid --allow-group --runner-auth-key-file --runner-auth-key-id --runner-auth-window --runner-auth-accept-v1 --runner-oidc-issuer --runner-oidc-audience --runner-oidc-jwks --runner-oidc-jwks-url --runner-oidc-leeway --runner-auth-claims --runner-auth-oidc-token-file --pid --lifecycle-timeout --user --group --input --exit-code --output --reload-timeout --client-timeout --expect-server-uid --hook-allow-tool --hook-no-ask --hook-in-process --hook-pack --evidence-signing-key --runner-auth-key --runner-auth-oidc-token --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --completions)
                    COMPREPLY=($(compgen -W "bash elvish fish powershell zsh" -- "${cur}"))
                    return 0
                    ;;
                --lifecycle)
                    COMPREPLY=($(compgen -W "start status stop" -- "${cur}"))
                    return 0
                    ;;
                --hook)
                    COMPREPLY=($(compgen -W "claude-code cursor" -- "${cur}"))
                    return 0
                    ;;
                --json-field)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --default-pack)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --registry)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pin-pack)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pin-pack-for)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --on-other-pack)
                    COMPREPLY=($(compgen -W "refuse decide-pinned" -- "${cur}"))
                    return 0
                    ;;
                --workspace-root)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --path-case)
                    COMPREPLY=($(compgen -W "sensitive insensitive" -- "${cur}"))
                    return 0
                    ;;
                --socket)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --socket-mode)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --listen-fd-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --metrics-listen-fd-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-request-bytes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-connections)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-connections-per-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-buffered-bytes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --request-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --idle-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --shutdown-grace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-decisions-per-second-per-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --decision-burst-per-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-evidence-bytes-per-second-per-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --evidence-burst-bytes-per-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-target)
                    COMPREPLY=($(compgen -W "auto journald stderr" -- "${cur}"))
                    return 0
                    ;;
                --log-format)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                --log-decisions)
                    COMPREPLY=($(compgen -W "all non-allow none" -- "${cur}"))
                    return 0
                    ;;
                --log-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --evidence-log)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --evidence-sync)
                    COMPREPLY=($(compgen -W "always batch none" -- "${cur}"))
                    return 0
                    ;;
                --evidence-signing-key-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --evidence-ed25519-key-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --evidence-signing-key-id)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --evidence-public-key)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --evidence-min-free)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --journal)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --allow-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --allow-group)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-auth-key-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-auth-key-id)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-auth-window)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-oidc-issuer)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-oidc-audience)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-oidc-jwks)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-oidc-jwks-url)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-oidc-leeway)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-auth-claims)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-auth-oidc-token-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --lifecycle-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --user)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --group)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --input)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reload-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --client-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --expect-server-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --hook-allow-tool)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --hook-pack)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --evidence-signing-key)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-auth-key)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --runner-auth-oidc-token)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _cavra__runtime -o nosort -o bashdefault -o default cavra-runtime
else
    complete -F _cavra__runtime -o bashdefault -o default cavra-runtime
fi
