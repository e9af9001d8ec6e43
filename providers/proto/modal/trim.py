"""Regenerates the vendored subset of Modal's gRPC schema (api.proto, task_command_router.proto).

Modal's wheels stopped shipping the .proto files (1.3.5); the schema is read back from the serialized
FileDescriptorProto embedded in the wheel's generated modules, trimmed to the messages, fields and RPCs
sbx uses (original names and field numbers kept: a subset is wire-compatible), and written as .proto
text plus a FileDescriptorSet (`modal.fds`) that `gen/` turns into Rust (no protoc anywhere).

    pip install modal==1.6.4 && python3 providers/proto/modal/trim.py
    cargo run --manifest-path providers/proto/modal/gen/Cargo.toml   # rewrites providers/src/modal/proto/*.rs
"""

from pathlib import Path

from google.protobuf import descriptor_pb2
import modal_version
from modal_proto import api_pb2, task_command_router_pb2

HERE = Path(__file__).resolve().parent

# message -> fields kept (None: all). Nested types used by kept fields are kept whole.
API = {
    "AppGetOrCreateRequest": ["app_name", "environment_name", "object_creation_type"],
    "AppGetOrCreateResponse": ["app_id"],
    "AuthTokenGetRequest": None,
    "AuthTokenGetResponse": None,
    "ClientHelloResponse": ["warning", "image_builder_version"],
    "CommandRouterAccess": None,
    "EnvironmentGetOrCreateRequest": None,
    "EnvironmentGetOrCreateResponse": None,
    "EnvironmentMetadata": ["name", "settings"],
    "EnvironmentSettings": ["image_builder_version", "webhook_suffix"],
    "GenericResult": ["status", "exception", "exitcode", "traceback"],
    "Image": ["dockerfile_commands", "version", "secret_ids"],
    "ImageGetOrCreateRequest": ["image", "app_id", "existing_image_id", "force_build", "builder_version"],
    "ImageGetOrCreateResponse": None,
    "ImageJoinStreamingRequest": None,
    "ImageJoinStreamingResponse": ["result", "entry_id", "eof", "metadata"],
    "ImageMetadata": ["workdir", "image_builder_version"],
    "NetworkAccess": None,
    "PortSpec": None,
    "PortSpecs": None,
    "Resources": ["memory_mb", "milli_cpu", "memory_mb_max", "ephemeral_disk_mb", "milli_cpu_max"],
    "Sandbox": [
        "entrypoint_args", "image_id", "secret_ids", "resources", "timeout_secs", "workdir", "block_network",
        "open_ports", "network_access", "runtime", "verbose", "name", "idle_timeout_secs", "inbound_cidr_allowlist",
    ],
    "SandboxCreateV2Request": ["app_id", "definition", "tags", "secret_sources"],
    "SandboxCreateV2Response": None,
    "SandboxGetCommandRouterAccessRequest": None,
    "SandboxGetCommandRouterAccessResponse": None,
    "SandboxGetTaskIdRequest": None,
    "SandboxGetTaskIdResponse": None,
    "SandboxGetTunnelsRequest": None,
    "SandboxGetTunnelsResponse": None,
    "SandboxHandleMetadata": None,
    "SandboxInfo": ["id", "created_at", "task_info", "app_id", "tags", "name", "image_id", "timeout_secs", "tunnels", "metadata"],
    "SandboxListRequest": None,
    "SandboxListResponse": None,
    "SandboxTag": None,
    "SandboxTagsGetRequest": None,
    "SandboxTagsGetResponse": None,
    "SandboxTerminateRequest": None,
    "SandboxTerminateResponse": None,
    "SandboxWaitRequest": None,
    "SandboxWaitResponse": None,
    "SecretSource": None,
    "StringMap": None,
    "TaskInfo": ["id", "started_at", "finished_at", "result", "enqueued_at", "sandbox_id"],
    "TunnelData": None,
}
API_ENUMS = ["ObjectCreationType", "TunnelType"]
API_RPCS = [
    "AppGetOrCreate", "AuthTokenGet", "ClientHello", "EnvironmentGetOrCreate", "ImageGetOrCreate", "ImageJoinStreaming",
    "SandboxCreateV2", "SandboxGetCommandRouterAccess", "SandboxGetTaskIdV2", "SandboxGetTunnelsV2", "SandboxListV2",
    "SandboxTagsGetV2", "SandboxTerminateV2", "SandboxWaitV2",
]

ROUTER = {
    "TaskExecPollRequest": None,
    "TaskExecPollResponse": None,
    "TaskExecStartRequest": [
        "task_id", "exec_id", "command_args", "stdout_config", "stderr_config", "timeout_secs", "workdir", "env",
        "secret_sources",
    ],
    "TaskExecStartResponse": None,
    "TaskExecStdinStatusRequest": None,
    "TaskExecStdinStatusResponse": None,
    "TaskExecStdinWriteStreamEnd": None,
    "TaskExecStdinWriteStreamRequest": None,
    "TaskExecStdinWriteStreamResponse": None,
    "TaskExecStdinWriteStreamStart": None,
    "TaskExecStdioReadRequest": None,
    "TaskExecStdioReadResponse": None,
    "TaskExecWaitRequest": None,
    "TaskExecWaitResponse": None,
}
ROUTER_ENUMS = ["TaskExecStderrConfig", "TaskExecStdioFileDescriptor", "TaskExecStdoutConfig"]
ROUTER_RPCS = ["TaskExecPoll", "TaskExecStart", "TaskExecStdinStatus", "TaskExecStdinWriteStream", "TaskExecStdioRead", "TaskExecWait"]


def trim(module, keep, enums, rpcs, deps):
    src = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(src)
    out = descriptor_pb2.FileDescriptorProto()
    out.name, out.package, out.syntax = src.name, src.package, src.syntax
    out.dependency.extend(deps)
    by_name = {m.name: m for m in src.message_type}
    for name in sorted(keep):
        m = descriptor_pb2.DescriptorProto()
        m.CopyFrom(by_name[name])
        fields = keep[name]
        if fields is not None:
            missing = set(fields) - {f.name for f in m.field}
            assert not missing, (name, missing)
            kept = [f for f in m.field if f.name in fields]
            del m.field[:]
            m.field.extend(kept)
        # Drop oneofs left empty (and renumber the kept ones' indexes), nested types no field uses.
        used = sorted({f.oneof_index for f in m.field if f.HasField("oneof_index")})
        remap = {old: new for new, old in enumerate(used)}
        oneofs = [m.oneof_decl[i] for i in used]
        del m.oneof_decl[:]
        m.oneof_decl.extend(oneofs)
        for f in m.field:
            if f.HasField("oneof_index"):
                f.oneof_index = remap[f.oneof_index]
        nested_used = {f.type_name.rsplit(".", 1)[1] for f in m.field if f.type_name}
        nested = [n for n in m.nested_type if n.name in nested_used]
        del m.nested_type[:]
        m.nested_type.extend(nested)
        enums_used = [e for e in m.enum_type if e.name in nested_used]
        del m.enum_type[:]
        m.enum_type.extend(enums_used)
        for f in m.field:
            if f.type_name and f.type_name.startswith("." + src.package + "."):
                t = f.type_name[len(src.package) + 2 :].split(".")[0]
                assert t in keep or t in enums or t == name, (name, f.name, f.type_name)
        out.message_type.append(m)
    out.enum_type.extend(e for e in src.enum_type if e.name in enums)
    svc = descriptor_pb2.ServiceDescriptorProto()
    svc.name = src.service[0].name
    svc.method.extend(m for m in src.service[0].method if m.name in rpcs)
    assert len(svc.method) == len(rpcs), rpcs
    out.service.append(svc)
    return out


def type_name(f, pkg):
    scalar = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32"}
    if f.type in scalar:
        return scalar[f.type]
    t = f.type_name.lstrip(".")
    return t[len(pkg) + 1 :] if t.startswith(pkg + ".") else t


def proto_text(fd, by_full):
    lines = [
        "// Derived from Modal's modal_proto (modal-labs/modal-client), modal %s, Apache-2.0" % modal_version.__version__,
        "// (see LICENSE next to this file). MODIFIED: a subset of messages, fields and RPCs, regenerated from the",
        "// FileDescriptorProto in the wheel by trim.py; names and field numbers are unchanged.",
        'syntax = "proto3";',
        "",
        "package %s;" % fd.package,
        "",
    ]
    lines += ['import "%s";' % d for d in fd.dependency] + [""]

    def msg(m, indent, scope):
        pad = "  " * indent
        lines.append(pad + "message %s {" % m.name)
        for e in m.enum_type:
            lines.append(pad + "  enum %s {" % e.name)
            lines.extend(pad + "    %s = %d;" % (v.name, v.number) for v in e.value)
            lines.append(pad + "  }")
        maps = {n.name: n for n in m.nested_type if n.options.map_entry}
        for n in m.nested_type:
            if not n.options.map_entry:
                msg(n, indent + 1, scope + "." + m.name)
        done_oneofs = set()
        for f in m.field:
            label = "repeated " if f.label == 3 else ""
            if f.proto3_optional:
                label = "optional "
            t = type_name(f, fd.package)
            entry = f.type_name.rsplit(".", 1)[-1] if f.type_name else None
            if entry in maps:
                k, v = maps[entry].field
                lines.append(pad + "  map<%s, %s> %s = %d;" % (type_name(k, fd.package), type_name(v, fd.package), f.name, f.number))
                continue
            if f.HasField("oneof_index") and not f.proto3_optional:
                o = f.oneof_index
                if o in done_oneofs:
                    continue
                done_oneofs.add(o)
                lines.append(pad + "  oneof %s {" % m.oneof_decl[o].name)
                for g in m.field:
                    if g.HasField("oneof_index") and g.oneof_index == o:
                        lines.append(pad + "    %s %s = %d;" % (type_name(g, fd.package), g.name, g.number))
                lines.append(pad + "  }")
                continue
            lines.append(pad + "  %s%s %s = %d;" % (label, t, f.name, f.number))
        lines.append(pad + "}")

    for e in fd.enum_type:
        lines.append("enum %s {" % e.name)
        lines += ["  %s = %d;" % (v.name, v.number) for v in e.value]
        lines += ["}", ""]
    for m in fd.message_type:
        msg(m, 0, fd.package)
        lines.append("")
    for s in fd.service:
        lines.append("service %s {" % s.name)
        for r in s.method:
            i = ("stream " if r.client_streaming else "") + type_name_str(r.input_type, fd.package)
            o = ("stream " if r.server_streaming else "") + type_name_str(r.output_type, fd.package)
            lines.append("  rpc %s(%s) returns (%s);" % (r.name, i, o))
        lines.append("}")
    return "\n".join(lines) + "\n"


def type_name_str(t, pkg):
    t = t.lstrip(".")
    return t[len(pkg) + 1 :] if t.startswith(pkg + ".") else t


def main():
    api = trim(api_pb2, API, API_ENUMS, API_RPCS, ["google/protobuf/empty.proto"])
    router = trim(task_command_router_pb2, ROUTER, ROUTER_ENUMS, ROUTER_RPCS, ["modal_proto/api.proto"])
    empty = descriptor_pb2.FileDescriptorProto()
    from google.protobuf import empty_pb2

    empty_pb2.DESCRIPTOR.CopyToProto(empty)
    fds = descriptor_pb2.FileDescriptorSet()
    fds.file.extend([empty, api, router])
    (HERE / "modal.fds").write_bytes(fds.SerializeToString())
    (HERE / "api.proto").write_text(proto_text(api, None))
    (HERE / "task_command_router.proto").write_text(proto_text(router, None))
    print("modal", modal_version.__version__, "->", HERE)


if __name__ == "__main__":
    main()
