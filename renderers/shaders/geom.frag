#version 330
// Geometry pass for depth/normals outputs: world-space unit normal (towards the viewer) and eye depth.
uniform vec3 u_eye;
in vec3 v_pos;
in vec3 v_norm;
in vec4 v_color;
in vec2 v_uv;
in float v_depth;
out vec4 f_geom;
void main() {
    vec3 v = normalize(u_eye - v_pos);
    vec3 n = length(v_norm) > 1e-12 ? normalize(v_norm) : v;
    if (dot(n, v) < 0.0) n = -n;
    f_geom = vec4(n, v_depth);
}
